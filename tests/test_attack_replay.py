"""The attack replay at a small budget (issue 18, 'Figures to reach'): every case is answered with its
documented status, never a 504 at a deadline, and the server stays healthy (/health and a normal /predict)
after each and during the PNG flood."""

import pytest

from mmnar_lab.serving.attack import main


@pytest.mark.slow
def test_attack_replay_small_budget(capsys):
    assert main(["--scale", "0.1"]) == 0
    out = capsys.readouterr().out
    for case, status in [
        ("1 dicom_bomb", "422"),
        ("2 long_notes_explain", "413"),  # too much work for the 2 s timeout: refused at once
        ("11 slow_body", "408"),
        ("12 query_token", "400"),
        ("11 idle_connections", "15/15 closed"),
    ]:
        line = next(line for line in out.splitlines() if line.startswith(case))
        assert status in line and line.split()[-1] != "NO", line
    flood = next(line for line in out.splitlines() if line.startswith("3 png_flood"))
    statuses = {part.split("x")[0] for part in flood.split()[2].split(",")}
    assert statuses <= {"200", "503", "413"} and " NO " not in flood, flood  # admitted or refused at once
    assert "during the flood: 200" in flood
