from mmnar_core.cli import main

if __name__ == "__main__":
    import os

    os.umask(0o077)  # what commands write (datasets built from patient records, embeddings, bundles) is private
    raise SystemExit(main())
