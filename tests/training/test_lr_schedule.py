"""The run-long learning-rate schedule equals transformers' own schedules step for step."""

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from fedlora.training.lr_schedule import job_progress, lr_factor


@pytest.mark.parametrize(
    ("name", "reference"), [("linear", get_linear_schedule_with_warmup), ("cosine", get_cosine_schedule_with_warmup)]
)
def test_matches_transformers_schedules(name, reference):
    total, warmup = 200, 20
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = reference(opt, num_warmup_steps=warmup, num_training_steps=total)
    for step in range(total):
        assert lr_factor(step / total, name, warmup / total) == pytest.approx(sched.get_last_lr()[0], abs=1e-12)
        opt.step()
        sched.step()


def test_constant_with_and_without_warmup():
    assert lr_factor(0.7, "constant", 0.0) == 1.0
    assert lr_factor(0.05, "constant", 0.1) == pytest.approx(0.5)


def test_a_jobs_progress_is_its_start_version_plus_its_local_steps():
    assert job_progress(3, 5, 10, total_versions=10) == pytest.approx(0.35)
    assert job_progress(3, 5, 10, total_versions=None) == 0.0
