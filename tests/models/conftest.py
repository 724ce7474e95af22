"""Model tests convert the ImageNet weights into a Keras cache under pytest's temp dir."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def keras_home(tmp_path_factory):
    """One Keras cache for the session's model tests, never ~/.keras."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.getbasetemp() / "keras_home"
        patch.setenv("KERAS_HOME", str(home))
        yield home
