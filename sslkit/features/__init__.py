"""Feature extraction, the HDF5 feature store and its cache."""
