"""Network building blocks (torch): encoders, decoder blocks, spot pooling and losses. Imports torch."""

from ._capsules import EfficientCapsNet, PrimaryCapsules, SelfAttentionRouting, squash
from ._gat import GAT, GraphAttention, knn_adjacency
from ._losses import pcc_loss, pearson_per_gene, pixnet_loss
from ._odconv import ODConv2d, ODConvAttention, ODConvAttentions
from ._pixnet_blocks import DFFN, DecoderStage, PixNetDecoder
from ._resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PYRAMID_CHANNELS,
    BasicBlock,
    EncoderLoadReport,
    ResNet18,
    load_encoder_weights,
    normalize_images,
)
from ._spot_pool import spot_pixel_index, spot_pool
from ._stain import gaussian_blur, perturb_hed
from ._tta import TTA_COUNTS, dihedral_mean
from ._vit import GridPositionEmbedding, SpotViT

__all__ = [
    "TTA_COUNTS",
    "BasicBlock",
    "DFFN",
    "DecoderStage",
    "EfficientCapsNet",
    "EncoderLoadReport",
    "GAT",
    "GraphAttention",
    "GridPositionEmbedding",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ODConv2d",
    "ODConvAttention",
    "ODConvAttentions",
    "PYRAMID_CHANNELS",
    "PixNetDecoder",
    "PrimaryCapsules",
    "ResNet18",
    "SelfAttentionRouting",
    "SpotViT",
    "dihedral_mean",
    "gaussian_blur",
    "knn_adjacency",
    "load_encoder_weights",
    "normalize_images",
    "pcc_loss",
    "pearson_per_gene",
    "perturb_hed",
    "pixnet_loss",
    "spot_pixel_index",
    "spot_pool",
    "squash",
]
