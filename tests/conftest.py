import os
import tempfile

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# crash logs of unexpected errors go to a throw-away folder, not the user's ~/.napari-gan/logs
os.environ.setdefault("NAPARI_GAN_LOG_DIR", os.path.join(tempfile.gettempdir(), "napari-gan-test-logs"))
# The suite is the CPU suite everywhere (CI has no GPU): what it compares must not change when
# the machine has one. NAPARI_GAN_TEST_GPU=1 keeps GPUs visible (then "auto" picks one).
if os.environ.get("NAPARI_GAN_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(2)
    yield
