"""Client-partitioned data through TFF's own loaders, built offline from packed files."""

from tff_prune.data.femnist import DataError, FederatedData, load_femnist, preprocess

__all__ = ["DataError", "FederatedData", "load_femnist", "preprocess"]
