import pytest

pytestmark = pytest.mark.slurm


def test_slurm_runs_a_job(slurm_cluster, tmp_path):
    script = tmp_path / "job.sh"
    out = tmp_path / "out.txt"
    script.write_text(f"#!/bin/bash\necho hello-$SLURM_JOB_ID > {out}\n")
    res = slurm_cluster.run("sbatch", "--chdir", str(tmp_path), str(script))
    job_id = res.stdout.strip().split()[-1]
    assert slurm_cluster.wait_idle(60)
    assert out.read_text().strip() == f"hello-{job_id}"
