"""Datasets (named by spec strings), view pipelines and samplers."""
