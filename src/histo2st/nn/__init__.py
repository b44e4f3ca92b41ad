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
from ._vit import GridPositionEmbedding, SpotViT

__all__ = [
    "GAT",
    "EfficientCapsNet",
    "GraphAttention",
    "GridPositionEmbedding",
    "ODConv2d",
    "ODConvAttention",
    "ODConvAttentions",
    "PrimaryCapsules",
    "SelfAttentionRouting",
    "SpotViT",
    "knn_adjacency",
    "squash",
    "DFFN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PYRAMID_CHANNELS",
    "BasicBlock",
    "DecoderStage",
    "EncoderLoadReport",
    "PixNetDecoder",
    "ResNet18",
    "load_encoder_weights",
    "normalize_images",
    "pcc_loss",
    "pearson_per_gene",
    "pixnet_loss",
    "spot_pixel_index",
    "spot_pool",
]
