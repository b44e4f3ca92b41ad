"""Training job launched by tests/train/test_ddp.py, alone or under torchrun (gloo, CPU)."""

import json
import os
import sys

import histo2st as st
from histo2st.model import PixNet

TINY = {"hidden_dim": 8, "pyramid_levels": 3, "crop_px": 96, "batch_size": 2, "tile_px": 128}

sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=1)
st.pp.normalize(sdata)
# a one-epoch encoder warm-up: the trainable parameters change mid-run, which DDP must be told about
model = PixNet(list(sdata["table"].var_names), microns_per_pixel=4.0, encoder_warmup_epochs=1, **TINY)
history = model.train(sdata, epochs=4, validation=0.2, progress=False, patience=None, seed=0)
if int(os.environ.get("RANK", 0)) == 0:
    with open(sys.argv[1], "w") as fh:
        json.dump({"world_size": int(os.environ.get("WORLD_SIZE", 1)), "history": history}, fh)
