"""Building blocks for one clip: media, landmarks, shards, datasets, weights, sample clips (no Ray, no training)."""
__version__ = "0.1.0"
