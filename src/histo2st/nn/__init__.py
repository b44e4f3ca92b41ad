"""Network building blocks (torch): encoders, decoder blocks, spot pooling and losses. Imports torch."""

from ._capsules import EfficientCapsNet, PrimaryCapsules, SelfAttentionRouting, squash
from ._encoder_weights import EncoderLoadReport, load_encoder_weights, read_state_dict
from ._encoders import build_encoder, encoder_input_stats, is_resnet
from ._gat import GAT, GraphAttention, knn_adjacency
from ._losses import pcc_loss, pearson_per_gene, pixnet_loss
from ._odconv import ODConv2d, ODConvAttention, ODConvAttentions
from ._pixnet_blocks import DFFN, DecoderStage, PixNetDecoder
from ._resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PYRAMID_CHANNELS,
    RESNET_CHANNELS,
    ResNet,
    ResNet18,
    ResNet50,
    normalize_images,
)
from ._spot_pool import spot_pixel_index, spot_pool
from ._stain import gaussian_blur, perturb_hed
from ._tta import TTA_COUNTS, dihedral_mean
from ._vit import GridPositionEmbedding, SpotViT
from ._vit_encoder import MLP_LAYERS, SimpleFeaturePyramid, ViTEncoder, jsonable_model_args

__all__ = [
    "TTA_COUNTS",
    "DFFN",
    "DecoderStage",
    "EfficientCapsNet",
    "EncoderLoadReport",
    "GAT",
    "GraphAttention",
    "GridPositionEmbedding",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MLP_LAYERS",
    "ODConv2d",
    "ODConvAttention",
    "ODConvAttentions",
    "PYRAMID_CHANNELS",
    "RESNET_CHANNELS",
    "PixNetDecoder",
    "PrimaryCapsules",
    "ResNet",
    "ResNet18",
    "ResNet50",
    "SelfAttentionRouting",
    "SimpleFeaturePyramid",
    "SpotViT",
    "ViTEncoder",
    "build_encoder",
    "dihedral_mean",
    "encoder_input_stats",
    "gaussian_blur",
    "is_resnet",
    "jsonable_model_args",
    "knn_adjacency",
    "load_encoder_weights",
    "normalize_images",
    "pcc_loss",
    "pearson_per_gene",
    "perturb_hed",
    "pixnet_loss",
    "read_state_dict",
    "spot_pixel_index",
    "spot_pool",
    "squash",
]
