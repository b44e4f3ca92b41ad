"""Layout of the synthetic tissue: regions, cell types and where each cell sits.

Lengths are in µm unless a name ends in ``_px``. Maps have the image's shape ``(height_px, width_px)``; pixel
``(i, j)`` has its center at ``((j + 0.5) * mpp, (i + 0.5) * mpp)`` µm.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

REGIONS = ("background", "stroma", "tumor", "immune", "gland", "fat")
BACKGROUND, STROMA, TUMOR, IMMUNE, GLAND, FAT = range(len(REGIONS))


@dataclass(frozen=True)
class CellType:
    """Morphology of one cell type; stain amounts are optical densities (hematoxylin or eosin concentration)."""

    name: str
    nucleus_um: tuple[float, float]  #: range of the nucleus semi-major axis
    aspect: tuple[float, float]  #: range of the nucleus minor / major axis ratio
    irregularity: float  #: std of the low harmonics of the nuclear outline, relative to its radius
    hematoxylin: tuple[float, float]  #: range of the nuclear hematoxylin
    chromatin: float  #: contrast of the chromatin texture
    vesicular: bool  #: pale nucleus with a dark rim and a nucleolus (carcinoma cells)
    body_pad_um: float  #: cytoplasm width around the nucleus
    eosin: float  #: cytoplasmic eosin
    basophilia: float  #: cytoplasmic hematoxylin (purple cytoplasm)
    rna: float  #: relative RNA content per µm² of cell body; scales the type's expression profile


# The first ``n_cell_types`` are used; the order puts the types that define tissue regions first.
CELL_TYPES = (
    CellType("tumor", (4.0, 6.0), (0.65, 0.95), 0.10, (0.6, 0.85), 0.30, True, 4.5, 0.38, 0.05, 1.6),
    CellType("fibroblast", (6.0, 9.0), (0.18, 0.30), 0.04, (0.95, 1.2), 0.20, False, 1.5, 0.45, 0.00, 0.7),
    CellType("lymphocyte", (2.6, 3.4), (0.85, 1.00), 0.05, (1.1, 1.35), 0.40, False, 1.0, 0.15, 0.05, 0.5),
    CellType("epithelial", (3.5, 4.5), (0.55, 0.80), 0.05, (0.75, 0.95), 0.25, False, 3.5, 0.28, 0.06, 1.2),
    CellType("adipocyte", (4.0, 6.0), (0.25, 0.35), 0.03, (0.8, 1.0), 0.10, False, 0.0, 0.45, 0.00, 0.3),
    CellType("macrophage", (4.0, 5.5), (0.55, 0.75), 0.15, (0.55, 0.75), 0.25, False, 6.0, 0.40, 0.03, 1.0),
    CellType("endothelial", (5.0, 7.0), (0.25, 0.40), 0.04, (0.85, 1.05), 0.20, False, 1.5, 0.30, 0.00, 0.8),
    CellType("plasma", (3.2, 4.0), (0.85, 1.00), 0.05, (0.9, 1.1), 0.45, False, 4.5, 0.25, 0.18, 1.3),
)
TUMOR_T, FIBRO_T, LYMPH_T, EPI_T, ADIPO_T, MACRO_T, ENDO_T, PLASMA_T = range(len(CELL_TYPES))


@dataclass
class Cells:
    """Per-cell parameters (one row per cell); cell ``k`` gets label ``k + 1`` in the rendered label map."""

    x: np.ndarray  #: center (µm)
    y: np.ndarray
    kind: np.ndarray  #: index into the cell-type catalogue
    a: np.ndarray  #: nucleus semi-axes (µm)
    b: np.ndarray
    theta: np.ndarray  #: direction of the nucleus major axis (radians)
    ox: np.ndarray  #: offset of the nucleus from the cell center (µm), e.g. the eccentric plasma-cell nucleus
    oy: np.ndarray
    hema: np.ndarray  #: nuclear hematoxylin; 0 hides the nucleus (adipocytes cut away from theirs)
    harmonics: np.ndarray  #: (n, 4) cos/sin coefficients of the 2nd and 3rd harmonic of the nuclear outline

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def concat(cls, parts: list[Cells]) -> Cells:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def subset(self, keep: np.ndarray) -> Cells:
        return Cells(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


@dataclass
class Layout:
    """Everything the renderer and the expression model need to know about the tissue."""

    regions: np.ndarray  #: (H, W) uint8 region index, see ``REGIONS``
    lumen: np.ndarray  #: (H, W) bool, gland and vessel lumens (empty, white)
    blood: np.ndarray  #: (H, W) bool, red blood cells inside vessels
    fiber_phase: np.ndarray  #: (H, W) float32 phase (µm) whose level lines are the stroma fibers
    cells: Cells


def make_cells(rng: np.random.Generator, kind: int, x, y, *, theta=None, offset=None) -> Cells:
    """Cells of type ``kind`` at ``(x, y)`` with morphology drawn from the type's ranges."""
    ct = CELL_TYPES[kind]
    n = len(x)
    a = rng.uniform(*ct.nucleus_um, n)
    theta = rng.uniform(0, np.pi, n) if theta is None else np.asarray(theta, dtype=float)
    ox, oy = (np.zeros(n), np.zeros(n)) if offset is None else offset
    return Cells(
        x=np.asarray(x, dtype=float),
        y=np.asarray(y, dtype=float),
        kind=np.full(n, kind, dtype=np.int16),
        a=a,
        b=a * rng.uniform(*ct.aspect, n),
        theta=theta,
        ox=np.asarray(ox, dtype=float),
        oy=np.asarray(oy, dtype=float),
        hema=rng.uniform(*ct.hematoxylin, n),
        harmonics=rng.normal(0, ct.irregularity, (n, 4)) / np.array([2.0, 2.0, 3.0, 3.0]),
    )


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], mpp: float, length_um: float) -> np.ndarray:
    """Gaussian random field with unit variance and correlation length ``length_um``, as float32 ``shape``.

    Filtered on a coarse grid and upsampled linearly by two sparse matrix products, so its cost hardly depends on
    the correlation length.
    """
    step = max(length_um / 3 / mpp, 1.0)
    coarse = (int(np.ceil(shape[0] / step)) + 1, int(np.ceil(shape[1] / step)) + 1)
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse), 1.5, mode="wrap")
    noise = ((noise - noise.mean()) / noise.std()).astype(np.float32)
    rows, cols = _linear_upsampler(coarse[0], shape[0]), _linear_upsampler(coarse[1], shape[1])
    return np.ascontiguousarray((cols @ (rows @ noise).T).T, dtype=np.float32)


def _linear_upsampler(n_in: int, n_out: int):
    """Sparse ``(n_out, n_in)`` linear-interpolation matrix aligning the outer edges of both grids."""
    import scipy.sparse as sp

    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.clip(pos.astype(int), 0, max(n_in - 2, 0))
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).astype(np.float32)
    out_index = np.arange(n_out)
    return sp.csr_matrix(
        (np.concatenate([1 - frac, frac]), (np.concatenate([out_index, out_index]), np.concatenate([lo, hi]))),
        shape=(n_out, n_in),
    )


def _quantile(field: np.ndarray, q: float) -> float:
    return float(np.quantile(field[::4, ::4], q))


def make_regions(rng: np.random.Generator, shape: tuple[int, int], mpp: float, n_cell_types: int) -> np.ndarray:
    """Region map: a tissue edge, tumor nests, immune aggregates, a gland zone and fat in a stroma background."""
    h, w = shape
    yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    # a ramp plus noise puts the tissue edge along one side, as in a real section, with some tears inside
    ramp = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    tissue = smooth_field(rng, shape, mpp, 500) + 2.5 * ramp / max(h, w)
    regions = np.full(shape, STROMA, dtype=np.uint8)
    zones = []
    if n_cell_types > EPI_T:
        zones.append((GLAND, smooth_field(rng, shape, mpp, 350), 0.72))
    zones.append((IMMUNE, smooth_field(rng, shape, mpp, 100), 0.9))
    nests = smooth_field(rng, shape, mpp, 280) + 0.45 * smooth_field(rng, shape, mpp, 50)
    zones.append((TUMOR, nests, 0.66))
    if n_cell_types > ADIPO_T:
        zones.append((FAT, smooth_field(rng, shape, mpp, 350), 0.88))
    for region, field, q in zones:
        regions[field > _quantile(field, q)] = region
    regions[tissue < _quantile(tissue, 0.08)] = BACKGROUND
    return regions


def fiber_phase(rng: np.random.Generator, shape: tuple[int, int], mpp: float) -> np.ndarray:
    """Phase map (µm) of the collagen fibers: wavy, mostly parallel bundles that merge and split."""
    h, w = shape
    yy = np.arange(h, dtype=np.float32)[:, None] * np.float32(mpp)
    xx = np.arange(w, dtype=np.float32)[None, :] * np.float32(mpp)
    angle = rng.uniform(0, np.pi)
    bend = 45.0 * smooth_field(rng, shape, mpp, 160)
    jitter = 2.5 * smooth_field(rng, shape, mpp, 10)
    return (xx * np.cos(angle) + yy * np.sin(angle) + bend + jitter).astype(np.float32)


def hex_lattice(rng: np.random.Generator, extent_um: tuple[float, float], spacing: float, jitter: float):
    """Jittered hexagonal lattice covering ``(height, width)`` µm; returns ``x, y`` in µm."""
    h, w = extent_um
    dy = spacing * np.sqrt(3) / 2
    rows = np.arange(-1, int(h / dy) + 2)
    cols = np.arange(-1, int(w / spacing) + 2)
    r, c = np.meshgrid(rows, cols, indexing="ij")
    x = (c + 0.5 * (r % 2)) * spacing + rng.uniform(0, spacing)
    y = r * dy + rng.uniform(0, dy)
    x = x.ravel() + rng.normal(0, jitter * spacing, r.size)
    y = y.ravel() + rng.normal(0, jitter * spacing, r.size)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return x[inside], y[inside]


def lookup(field: np.ndarray, x: np.ndarray, y: np.ndarray, mpp: float) -> np.ndarray:
    """Values of a map at points given in µm (nearest pixel)."""
    i = np.clip((y / mpp).astype(int), 0, field.shape[0] - 1)
    j = np.clip((x / mpp).astype(int), 0, field.shape[1] - 1)
    return field[i, j]


def _ellipse_masks(shape, mpp, cx, cy, r1, r2, phi, pads) -> list[np.ndarray]:
    """Boolean masks of rotated ellipses (one loop step per structure, not per pixel), one per padding."""
    from skimage.draw import ellipse

    masks = [np.zeros(shape, dtype=bool) for _ in pads]
    for k in range(len(cx)):
        for mask, pad in zip(masks, pads, strict=True):
            rr, cc = ellipse(
                cy[k] / mpp - 0.5, cx[k] / mpp - 0.5, (r2[k] + pad) / mpp, (r1[k] + pad) / mpp, shape, rotation=-phi[k]
            )
            mask[rr, cc] = True
    return masks


def _ring_cells(rng, kind, cx, cy, r1, r2, phi, *, gap, spacing, radial):
    """Cells on rings around ellipses (gland epithelium, vessel endothelium), nuclei radial or tangential."""
    counts = np.maximum(np.round(np.pi * (r1 + r2 + 2 * gap) / spacing).astype(int), 3)
    owner = np.repeat(np.arange(len(cx)), counts)
    position = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    t = 2 * np.pi * position / counts[owner] + rng.normal(0, 0.04, owner.size)
    big, small, rot = r1[owner] + gap, r2[owner] + gap, phi[owner]
    ex, ey = big * np.cos(t), small * np.sin(t)
    normal = np.arctan2(big * np.sin(t), small * np.cos(t))
    x = cx[owner] + ex * np.cos(rot) - ey * np.sin(rot)
    y = cy[owner] + ex * np.sin(rot) + ey * np.cos(rot)
    theta = normal + rot + (0 if radial else np.pi / 2)
    return make_cells(rng, kind, x, y, theta=theta)


def make_layout(rng: np.random.Generator, shape: tuple[int, int], mpp: float, n_cell_types: int) -> Layout:
    """Regions, lumens, fibers and every cell of a synthetic tissue of ``shape`` pixels."""
    h, w = shape
    extent = (h * mpp, w * mpp)
    regions = make_regions(rng, shape, mpp, n_cell_types)
    phase = fiber_phase(rng, shape, mpp)
    lumen = np.zeros(shape, dtype=bool)
    blood = np.zeros(shape, dtype=bool)
    occupied = np.zeros(shape, dtype=bool)
    parts: list[Cells] = []

    if n_cell_types > EPI_T:
        gx, gy = hex_lattice(rng, extent, 95.0, 0.1)
        keep = lookup(regions, gx, gy, mpp) == GLAND
        gx, gy = gx[keep], gy[keep]
        r1 = rng.uniform(10, 28, gx.size)
        r2 = r1 * rng.uniform(0.55, 0.95, gx.size)
        phi = rng.uniform(0, np.pi, gx.size)
        gland_lumen, gland_outer = _ellipse_masks(shape, mpp, gx, gy, r1, r2, phi, pads=(0.0, 10.0))
        lumen |= gland_lumen
        occupied |= gland_outer
        parts.append(_ring_cells(rng, EPI_T, gx, gy, r1, r2, phi, gap=4.5, spacing=6.5, radial=True))

    if n_cell_types > ENDO_T:
        n = rng.poisson(extent[0] * extent[1] / 140.0**2)
        vx, vy = rng.uniform(0, extent[1], n), rng.uniform(0, extent[0], n)
        keep = np.isin(lookup(regions, vx, vy, mpp), (STROMA, GLAND)) & ~lookup(occupied, vx, vy, mpp)
        vx, vy = vx[keep], vy[keep]
        r1 = rng.uniform(4, 11, vx.size)
        r2 = r1 * rng.uniform(0.5, 1.0, vx.size)
        phi = rng.uniform(0, np.pi, vx.size)
        vessel_lumen, vessel_outer = _ellipse_masks(shape, mpp, vx, vy, r1, r2, phi, pads=(0.0, 4.0))
        lumen |= vessel_lumen
        occupied |= vessel_outer
        parts.append(_ring_cells(rng, ENDO_T, vx, vy, r1, r2, phi, gap=1.5, spacing=14.0, radial=False))
        blood |= _red_blood_cells(rng, vessel_lumen, mpp)

    tx, ty = hex_lattice(rng, extent, 12.5, 0.12)
    keep = (lookup(regions, tx, ty, mpp) == TUMOR) & (rng.random(tx.size) < 0.97)
    parts.append(make_cells(rng, TUMOR_T, tx[keep], ty[keep]))

    lx, ly = hex_lattice(rng, extent, 7.5, 0.15)
    keep = (lookup(regions, lx, ly, mpp) == IMMUNE) & (rng.random(lx.size) < 0.92)
    lx, ly = lx[keep], ly[keep]
    plasma = (rng.random(lx.size) < 0.1) if n_cell_types > PLASMA_T else np.zeros(lx.size, dtype=bool)
    parts.append(make_cells(rng, LYMPH_T, lx[~plasma], ly[~plasma]))
    if plasma.any():
        parts.append(_plasma_cells(rng, lx[plasma], ly[plasma]))

    if n_cell_types > ADIPO_T:
        parts.append(_adipocytes(rng, regions, extent, mpp))

    parts.extend(_scattered_cells(rng, regions, occupied, extent, mpp, phase, n_cell_types))
    cells = Cells.concat(parts)
    cells = cells.subset(~lookup(lumen, cells.x, cells.y, mpp) & (lookup(regions, cells.x, cells.y, mpp) != BACKGROUND))
    return Layout(
        regions=regions,
        lumen=lumen,
        blood=blood,
        fiber_phase=phase,
        cells=_drop_overlaps(cells, min_um=3.0),
    )


def _plasma_cells(rng, x, y) -> Cells:
    # the plasma-cell nucleus sits to one side of its cytoplasm
    direction = rng.uniform(0, 2 * np.pi, x.size)
    return make_cells(rng, PLASMA_T, x, y, offset=(2.5 * np.cos(direction), 2.5 * np.sin(direction)))


def _adipocytes(rng, regions, extent, mpp) -> Cells:
    spacing = 55.0
    x, y = hex_lattice(rng, extent, spacing, 0.22)
    keep = lookup(regions, x, y, mpp) == FAT
    x, y = x[keep], y[keep]
    # the flattened nucleus lies against the membrane, and most sections miss it
    direction = rng.uniform(0, 2 * np.pi, x.size)
    reach = 0.4 * spacing
    cells = make_cells(
        rng, ADIPO_T, x, y, theta=direction + np.pi / 2, offset=(reach * np.cos(direction), reach * np.sin(direction))
    )
    cells.hema[rng.random(x.size) > 0.3] = 0.0
    return cells


def _red_blood_cells(rng, vessel_lumen: np.ndarray, mpp: float) -> np.ndarray:
    iy, ix = np.nonzero(vessel_lumen)
    if iy.size == 0:
        return np.zeros_like(vessel_lumen)
    centers = rng.choice(iy.size, size=max(1, int(iy.size * mpp**2 / 45.0)), replace=False)
    seeds = np.zeros_like(vessel_lumen)
    seeds[iy[centers], ix[centers]] = True
    distance = ndimage.distance_transform_edt(~seeds, sampling=mpp)
    return (distance < 3.5) & vessel_lumen


def _scattered_cells(rng, regions, occupied, extent, mpp, phase, n_cell_types) -> list[Cells]:
    """Cells scattered in the stroma: fibroblasts along the fibers, and immune cells crowding tumor borders."""
    area = extent[0] * extent[1]
    stroma_like = np.isin(regions, (STROMA, GLAND)) & ~occupied
    # a 4 µm grid is fine enough for a density that varies over tens of µm
    step = max(int(round(4.0 / mpp)), 1)
    tumor_distance = ndimage.distance_transform_edt(regions[::step, ::step] != TUMOR, sampling=step * mpp)
    gy, gx = np.gradient(phase)

    def sample(max_density: float, density) -> tuple[np.ndarray, np.ndarray]:
        n = rng.poisson(area * max_density)
        x, y = rng.uniform(0, extent[1], n), rng.uniform(0, extent[0], n)
        accept = rng.random(n) * max_density < density(x, y)
        accept &= lookup(stroma_like, x, y, mpp)
        return x[accept], y[accept]

    out = []
    x, y = sample(1 / 420, lambda x, y: np.where(lookup(regions, x, y, mpp) == STROMA, 1 / 420, 1 / 900))
    along = np.arctan2(lookup(gy, x, y, mpp), lookup(gx, x, y, mpp)) + np.pi / 2
    out.append(make_cells(rng, FIBRO_T, x, y, theta=along + rng.normal(0, 0.12, x.size)))

    def near_tumor(base: float, peak: float, reach: float):
        return lambda x, y: base + peak * np.exp(-lookup(tumor_distance, x, y, step * mpp) / reach)

    x, y = sample(1 / 2500 + 1 / 200, near_tumor(1 / 2500, 1 / 200, 25.0))
    out.append(make_cells(rng, LYMPH_T, x, y))
    if n_cell_types > MACRO_T:
        x, y = sample(1 / 4000 + 1 / 1200, near_tumor(1 / 4000, 1 / 1200, 40.0))
        out.append(make_cells(rng, MACRO_T, x, y))
    if n_cell_types > PLASMA_T:
        x, y = sample(1 / 5000, lambda x, y: np.full(x.shape, 1 / 5000))
        out.append(_plasma_cells(rng, x, y))
    return out


def _drop_overlaps(cells: Cells, *, min_um: float) -> Cells:
    """Drop the later of every pair of cells closer than ``min_um``; earlier structures (glands, vessels) win."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(np.column_stack([cells.x, cells.y])).query_pairs(min_um, output_type="ndarray")
    keep = np.ones(len(cells), dtype=bool)
    keep[pairs.max(axis=1)] = False
    return cells.subset(keep)
