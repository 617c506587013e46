import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# The suite is the CPU suite everywhere (CI has no GPU): what it compares must not change when
# the machine has one. NAPARI_GAN_TEST_GPU=1 keeps GPUs visible (then "auto" picks one).
if os.environ.get("NAPARI_GAN_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(2)
    yield
