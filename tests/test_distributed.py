"""DistributedDataParallel with 2 CPU processes (gloo) gives the same model as one process.

Without the auxiliary loss and with every row labelled, a rank's loss is the mean over an equal share
of the global batch, so the averaged gradient equals the one-process gradient: logits agree to float
rounding (tolerance 1e-3). With the auxiliary loss each rank's InfoNCE sees only its share of the batch
as negatives, so the runs differ slightly: stated tolerance 0.02 AUROC.
"""

import socket
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmnar_lab.planted import planted_data

from support.paths import ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(tmp_path, name, processes, aux):
    out = tmp_path / f"{name}.npy"
    worker = str(ROOT / "tests" / "support" / "ddp_worker.py")
    if processes == 1:
        command = [sys.executable, worker, str(out)]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            worker,
            str(out),
        ]
    if aux:
        command.append("aux")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


def test_two_processes_match_one_without_aux(tmp_path):
    one = _run(tmp_path, "one", 1, aux=False)
    two = _run(tmp_path, "two", 2, aux=False)
    assert np.abs(one - two).max() < 1e-3


def test_two_processes_match_one_with_aux_within_tolerance(tmp_path):
    data = planted_data(n=2000)
    labels = data.labels[data.rows("test"), 0].numpy()
    one = roc_auc_score(labels, _run(tmp_path, "one_aux", 1, aux=True)[:, 0])
    two = roc_auc_score(labels, _run(tmp_path, "two_aux", 2, aux=True)[:, 0])
    assert abs(one - two) < 0.02
