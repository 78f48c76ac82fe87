from mmnar_core.terminate import exit_zero_on_sigterm

exit_zero_on_sigterm()  # before the heavy imports below: a SIGTERM while they load ends with status 0 too

from mmnar_core.cli import main  # noqa: E402

if __name__ == "__main__":
    import os

    os.umask(0o077)  # what commands write (datasets built from patient records, embeddings, bundles) is private
    raise SystemExit(main())
