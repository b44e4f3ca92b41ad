"""Arguments shared by the benchmark smoke tests: models small enough for seconds of training."""

TINY_PIXNET = '{"hidden_dim": 8, "pyramid_levels": 3, "crop_px": 96, "batch_size": 2, "tile_px": 128}'
