"""The plugin keeps sslkit's method contract (run: ``python -m pytest`` in this folder)."""

from sslkit_simclr import SimCLR

from sslkit.testing import check_method


def test_simclr_keeps_the_method_contract():
    """Every rule of ``sslkit.testing.check_method``, on tiny synthetic images, in seconds."""
    passed = check_method(SimCLR)
    assert "state_dict_round_trip_resumes_exactly" in passed
