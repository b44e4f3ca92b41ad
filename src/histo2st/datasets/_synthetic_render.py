"""Rendering the synthetic tissue as H&E: stain concentrations per pixel, then Beer-Lambert to RGB.

Each pixel belongs to its nearest cell (a Voronoi partition from one Euclidean distance transform); it is in that
cell's nucleus or body when it falls inside the cell's outline, so the per-pixel work is vectorised over row bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._synthetic_cells import (
    ADIPO_T,
    BACKGROUND,
    CELL_TYPES,
    FAT,
    GLAND,
    IMMUNE,
    STROMA,
    TUMOR,
    Layout,
    smooth_field,
)

#: Optical density per unit stain in (r, g, b): the usual reference H&E stain vectors (Macenko et al. 2009 style).
HEMATOXYLIN = np.array([0.5626, 0.7201, 0.4062])
EOSIN = np.array([0.2159, 0.8012, 0.5581])
#: Eosin of the extracellular matrix per region: dense pink collagen in stroma, looser around glands, none in fat.
ECM_EOSIN = {BACKGROUND: 0.0, STROMA: 0.42, TUMOR: 0.3, IMMUNE: 0.22, GLAND: 0.3, FAT: 0.0}
FIBER_PERIOD_UM = 7.0
BAND_ROWS = 256


@dataclass
class Raster:
    """Per-pixel result of rendering: which cell a pixel belongs to, and the two stain concentrations."""

    labels: np.ndarray  #: (H, W) int32, label ``k + 1`` of the cell whose body holds the pixel, 0 outside cells
    hematoxylin: np.ndarray  #: (H, W) float32
    eosin: np.ndarray  #: (H, W) float32


def _normal_noise(rng, shape, sigma_px: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_px)
    return noise / max(float(noise.std()), 1e-6)


def rasterize(layout: Layout, mpp: float, rng: np.random.Generator) -> Raster:
    """Cell labels and stain concentrations of every pixel."""
    cells, regions = layout.cells, layout.regions
    h, w = regions.shape
    owner, edge, rim = _owners(cells, (h, w), mpp)
    kinds, kind, par, harmonics = _cell_parameters(cells)
    f32 = np.float32

    chromatin = _normal_noise(rng, (h, w), 0.45 / mpp)
    cytoplasm = smooth_field(rng, (h, w), mpp, 5.0)
    labels = np.zeros((h, w), dtype=np.int32)
    hema = np.zeros((h, w), dtype=f32)
    eosin = np.zeros((h, w), dtype=f32)
    xs = ((np.arange(w) + 0.5) * mpp).astype(f32)[None, :]
    for r0 in range(0, h, BAND_ROWS):
        r1 = min(r0 + BAND_ROWS, h)
        c = owner[r0:r1]
        t = kind[c]
        ys = ((np.arange(r0, r1) + 0.5) * mpp).astype(f32)[:, None]
        cos, sin = par["cos"][c], par["sin"][c]
        dx, dy = xs - par["x"][c], ys - par["y"][c]
        u, v = dx * cos + dy * sin, dy * cos - dx * sin
        body = (u / par["ba"][c]) ** 2 + (v / par["bb"][c]) ** 2 <= 1
        dx, dy = dx - par["ox"][c], dy - par["oy"][c]
        un = (dx * cos + dy * sin) / par["a"][c]
        vn = (dy * cos - dx * sin) / par["b"][c]
        rho = np.hypot(un, vn) + f32(1e-6)
        cp, sp = un / rho, vn / rho
        hc = harmonics[c]
        outline = 1 + hc[..., 0] * (cp * cp - sp * sp) + hc[..., 1] * 2 * cp * sp
        outline += hc[..., 2] * cp * (4 * cp * cp - 3) + hc[..., 3] * sp * (3 - 4 * sp * sp)
        # coverage of the pixel by the nucleus, anti-aliased over about one pixel
        nuc = np.clip((outline - rho) * par["b"][c] / f32(mpp) + f32(0.5), 0, 1) * (par["hema"][c] > 0)
        is_adipo = t == ADIPO_T
        body = np.where(is_adipo, rim[r0:r1] & (regions[r0:r1] == FAT), body) | (nuc > 0.5)
        body &= (regions[r0:r1] != BACKGROUND) & ~layout.lumen[r0:r1] & (c > 0)

        texture = np.clip(1 + kinds[t, 0] * chromatin[r0:r1], 0.3, 2.0)
        # carcinoma nuclei: pale center, chromatin along the membrane, one dark nucleolus
        relative = rho / outline
        vesicular = 0.7 + 0.45 * np.clip((relative - 0.6) / 0.35, 0, 1) + 0.7 * np.clip((0.15 - rho) * 10, 0, 1)
        texture = np.where(kinds[t, 4] > 0, texture * vesicular, texture)
        cyto = body * (1 - nuc)
        hema[r0:r1] = nuc * par["hema"][c] * texture + cyto * kinds[t, 2]
        membrane = edge[r0:r1] & body & ~is_adipo
        eosin[r0:r1] = cyto * kinds[t, 1] * (1 + 0.25 * cytoplasm[r0:r1]) + 0.12 * nuc + 0.1 * membrane
        labels[r0:r1] = np.where(body, c, 0)

    _stain_extracellular(layout, labels, hema, eosin, mpp, rng)
    return Raster(labels=labels, hematoxylin=hema, eosin=eosin)


def _owners(cells, shape: tuple[int, int], mpp: float):
    """The cell owning each pixel (nearest center, 0 without cells), the Voronoi edges, and those edges widened."""
    h, w = shape
    seeds = np.zeros((h, w), dtype=np.int32)
    seeds[np.clip((cells.y / mpp).astype(int), 0, h - 1), np.clip((cells.x / mpp).astype(int), 0, w - 1)] = np.arange(
        1, len(cells) + 1, dtype=np.int32
    )
    if len(cells) == 0:
        owner = seeds
    else:
        iy, ix = ndimage.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
        owner = seeds[iy, ix]
        del iy, ix
    # Voronoi edges: cell membranes in cell sheets, and the thin rims of adipocytes
    edge = np.zeros((h, w), dtype=bool)
    edge[:, 1:] |= owner[:, 1:] != owner[:, :-1]
    edge[1:, :] |= owner[1:, :] != owner[:-1, :]
    rim = ndimage.binary_dilation(edge, iterations=max(int(round(0.7 / mpp)), 0)) if mpp < 0.7 else edge
    return owner, edge, rim


def _cell_parameters(cells):
    """Per-type stain constants, and per-cell geometry indexed by owner label (index 0: a dummy cell)."""
    f32 = np.float32
    kinds = np.array([[ct.chromatin, ct.eosin, ct.basophilia, ct.body_pad_um, ct.vesicular] for ct in CELL_TYPES], f32)
    kind = np.concatenate([[0], cells.kind]).astype(np.int64)
    par = {
        "x": cells.x,
        "y": cells.y,
        "ox": cells.ox,
        "oy": cells.oy,
        "a": cells.a,
        "b": cells.b,
        "cos": np.cos(cells.theta),
        "sin": np.sin(cells.theta),
        "hema": cells.hema,
        "ba": cells.a + kinds[cells.kind, 3] + np.hypot(cells.ox, cells.oy),
        "bb": cells.b + kinds[cells.kind, 3] + np.hypot(cells.ox, cells.oy),
    }
    # index 0 is a dummy cell for images without cells; it has a zero-size nucleus and body
    par = {k: np.concatenate([[1e-3 if k in ("a", "b", "ba", "bb") else 0.0], v]).astype(f32) for k, v in par.items()}
    harmonics = np.concatenate([np.zeros((1, 4)), cells.harmonics]).astype(f32)
    return kinds, kind, par, harmonics


def _stain_extracellular(layout: Layout, labels, hema, eosin, mpp: float, rng) -> None:
    """Collagen fibers, lumens, red blood cells and glass, in place, where no cell body is."""
    shape = labels.shape
    # thin bright bundles (a sharpened cosine of the phase), broken along their length by a mottling field
    fibers = (0.5 + 0.5 * np.cos(layout.fiber_phase * np.float32(2 * np.pi / FIBER_PERIOD_UM))) ** 3
    fibers *= np.clip(0.6 + 0.5 * smooth_field(rng, shape, mpp, 10.0), 0, 1)
    base = np.zeros(len(ECM_EOSIN), dtype=np.float32)
    for region, value in ECM_EOSIN.items():
        base[region] = value
    texture = 1 + 0.15 * smooth_field(rng, shape, mpp, 6.0)
    ecm = np.where(layout.lumen, np.float32(0.04), base[layout.regions] * (0.45 + 0.85 * fibers) * texture)
    outside = labels == 0
    eosin += np.where(outside, ecm, np.float32(0))
    hema += np.where(outside & (layout.regions != BACKGROUND), np.float32(0.03), np.float32(0))
    eosin[layout.blood] = 0.9
    hema[layout.blood] = 0.03


def to_rgb(raster: Raster, mpp: float, rng: np.random.Generator) -> np.ndarray:
    """Beer-Lambert H&E: ``I = 255 * 10**-(H * h + E * e + glass)``, with optical blur, uneven staining and noise.

    Returns a ``(H, W, 3)`` uint8 image. The stain vectors are jittered per seed like slide-to-slide variation.
    """
    shape = raster.labels.shape
    blur = 0.45 / mpp
    thickness = 1 + 0.08 * smooth_field(rng, shape, mpp, 600)
    hema = ndimage.gaussian_filter(raster.hematoxylin, blur) * thickness
    eosin = ndimage.gaussian_filter(raster.eosin, blur) * thickness
    vectors = []
    for vec in (HEMATOXYLIN, EOSIN):
        vec = np.clip(vec + rng.normal(0, 0.02, 3), 0.05, None)
        vectors.append((vec / np.linalg.norm(vec)).astype(np.float32))
    rgb = np.empty((*shape, 3), dtype=np.uint8)
    for ch in range(3):
        od = hema * vectors[0][ch] + eosin * vectors[1][ch] + np.float32(0.025)
        intensity = 255 * np.power(np.float32(10), -od) + rng.normal(0, 2.5, shape).astype(np.float32)
        rgb[..., ch] = np.clip(intensity, 0, 255).astype(np.uint8)
    return rgb
