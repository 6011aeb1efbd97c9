import os

# Must be set before huggingface_hub is first imported: offline lookups then fail
# in 0.1 s instead of retrying for ~46 s. Nothing in the tests touches the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("TLE_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tle_data():
    """The shared real-data folder; tests that need it skip (saying why) when absent."""
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"real data folder {d} is absent; set TLE_DATA to run this test")
    return d


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny nets: intra-op threads gain nothing there,
    and on a shared 2-core machine they spin against other processes (7 s vs 55 s for
    one DANN fit here). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def blobs():
    """3 well separated Gaussian blobs in 10-D: any working classifier gets > 0.9."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=150, centers=3, n_features=10, random_state=0, cluster_std=1.0)
    return X.astype(np.float32), y
