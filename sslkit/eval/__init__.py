"""Evaluation protocols (kNN; linear, semi-supervised and transfer arrive later)."""
