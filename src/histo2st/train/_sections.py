"""Sections prepared for training: H&E at the model's resolution, spot centers and normalized targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._constants import ATTRS_KEY, INSTANCE_KEY, SPATIAL_KEY
from .._core import as_gene_list, as_samples, validate
from .._core._resample import resample_image
from .._logging import logger


@dataclass
class Section:
    """One section at the training resolution.

    Attributes
    ----------
    name
        Section (sample) name.
    image
        ``(3, h, w)`` uint8 H&E resampled to ``microns_per_pixel``.
    centers
        ``(n, 2)`` spot centers ``(x, y)`` in pixels of ``image``.
    radii
        ``(n,)`` spot radii in pixels of ``image``.
    targets
        ``(n, genes)`` normalized expression, or ``None`` when predicting.
    spot_names
        Spot barcodes (the table's ``obs_names``).
    microns_per_pixel
        Pixel size of ``image``.
    """

    name: str
    image: np.ndarray
    centers: np.ndarray
    radii: np.ndarray
    targets: np.ndarray | None
    spot_names: np.ndarray
    microns_per_pixel: float

    @property
    def n_spots(self) -> int:
        return len(self.centers)


def check_normalized(table, name: str) -> dict:
    """Return the normalization parameters recorded by :func:`histo2st.pp.normalize`, or raise."""
    params = table.uns.get(ATTRS_KEY, {}).get("normalize")
    if params is None:
        raise ValueError(
            f"Section '{name}': the table is not normalized. Models are trained on log-normalized expression: "
            "call `st.pp.normalize(sdata)` (and usually `st.pp.select_genes(...)`) before fitting."
        )
    return dict(params)


def common_genes(samples: dict) -> list[str]:
    """Genes present in the tables of every sample, in the order of the first."""
    names = list(samples)
    first = samples[names[0]]
    genes = list(first.tables[validate(first).table_key].var_names)
    for name in names[1:]:
        sdata = samples[name]
        present = set(sdata.tables[validate(sdata).table_key].var_names)
        genes = [g for g in genes if g in present]
    if not genes:
        raise ValueError("The sections share no genes; select a common gene set with `st.pp.select_genes`.")
    return genes


def prepare_sections(
    data, genes: str | Sequence[str], microns_per_pixel: float, *, with_targets: bool = True
) -> tuple[list[Section], dict]:
    """Resample every section to ``microns_per_pixel`` and collect spot centers and targets for ``genes``.

    ``genes`` may be one gene as a string. Returns the sections and the normalization parameters (the same for all
    sections, or an error).
    """
    genes = as_gene_list(genes)
    sections, norm = [], None
    for name, sdata in as_samples(data).items():
        scale = validate(sdata)
        table = sdata.tables[scale.table_key]
        targets = None
        if with_targets:
            params = check_normalized(table, name)
            if norm is not None and params != norm:
                raise ValueError(f"Section '{name}' was normalized with {params}, other sections with {norm}.")
            norm = params
            missing = [g for g in genes if g not in table.var_names]
            if missing:
                raise ValueError(
                    f"Section '{name}' lacks {len(missing)} of the {len(genes)} genes, e.g. {missing[:5]}. Select "
                    "genes present in every section with `st.pp.select_genes([...])`."
                )
            x = table[:, genes].X
            targets = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)
        factor = scale.microns_per_pixel / microns_per_pixel
        image = resample_image(sdata.images[scale.image_key].data, factor).compute()
        shapes = sdata.shapes[scale.shapes_key]
        ids = table.obs[INSTANCE_KEY].to_numpy()
        radii = shapes.loc[ids, "radius"].to_numpy(dtype=np.float64) * factor
        centers = np.asarray(table.obsm[SPATIAL_KEY], dtype=np.float64) * factor
        logger.debug(f"Section '{name}': {len(ids)} spots, image {image.shape[1:]} px at {microns_per_pixel} µm/px.")
        sections.append(
            Section(
                name=name,
                image=image,
                centers=centers.astype(np.float32),
                radii=radii.astype(np.float32),
                targets=targets,
                spot_names=np.asarray(table.obs_names),
                microns_per_pixel=microns_per_pixel,
            )
        )
    return sections, norm or {}


def normalize_stains(
    sections: Sequence[Section], *, reference_sections: Sequence[str], fitted: dict | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Macenko-normalize the sections' images to a reference fitted on the tissue of ``reference_sections``.

    Each section's tissue pixels (:func:`histo2st._core._stain.tissue_pixels`, about one every 8 µm) give its own
    stains; the reference is fitted on the pixels of ``reference_sections`` pooled, unless ``fitted`` (an earlier
    result's card entry) already holds one, whose sections are then kept in the card beside these. Each whole image
    is normalized with its own stains, block by block, as prediction normalizes a slide.

    Returns
    -------
    images
        The normalized ``(3, h, w)`` uint8 image of each section, by name.
    card
        For ``model.card["stain_normalization"]``: ``method``, ``reference`` (``MacenkoNormalizer.to_dict()``),
        ``reference_sections`` and, per section, its ``stain_matrix`` (columns: hematoxylin, eosin),
        ``max_concentrations`` and the number and spacing in µm of the pixels they were estimated on.
    """
    from .._core._stain import MacenkoNormalizer, describe_stains, tissue_pixels, transform_blocks

    samples = {s.name: tissue_pixels(s.image, s.microns_per_pixel) for s in sections}
    if fitted is None:
        normalizer = MacenkoNormalizer()
        pooled = np.concatenate([samples[name][0] for name in reference_sections], axis=1)
        reference = normalizer.slide_stains(pooled, name=f"The training sections {list(reference_sections)}")
        normalizer.stain_matrix, normalizer.max_concentrations = reference
        logger.info(f"Stain reference from {pooled.shape[1]} tissue pixels: {describe_stains(reference)}.")
    else:
        normalizer = MacenkoNormalizer.from_dict(fitted["reference"])
        reference_sections = fitted["reference_sections"]
    images, per_section = {}, dict(fitted["sections"]) if fitted is not None else {}
    for section in sections:
        pixels, spacing = samples[section.name]
        source = normalizer.slide_stains(pixels, name=f"Section '{section.name}'")
        logger.info(f"Section '{section.name}' stains: {describe_stains(source)}.")
        images[section.name] = transform_blocks(section.image, normalizer, source).compute()
        per_section[section.name] = {
            "stain_matrix": source[0].tolist(),
            "max_concentrations": source[1].tolist(),
            "n_pixels": int(pixels.shape[1]),
            "spacing_um": spacing,
        }
    card = {
        "method": "macenko",
        "reference": normalizer.to_dict(),
        "reference_sections": list(reference_sections),
        "sections": per_section,
    }
    return images, card


def subset_section(section: Section, mask: np.ndarray) -> Section:
    """The same section (image shared, not copied) restricted to the spots in ``mask``."""
    return Section(
        name=section.name,
        image=section.image,
        centers=section.centers[mask],
        radii=section.radii[mask],
        targets=None if section.targets is None else section.targets[mask],
        spot_names=section.spot_names[mask],
        microns_per_pixel=section.microns_per_pixel,
    )


def split_validation(sections: list[Section], validation, *, seed: int) -> tuple[list[Section], list[Section], dict]:
    """Split sections into training and validation sets; never the same spots in both.

    ``validation`` is a section name or a list of names (held out whole), a fraction in (0, 1) of the spots of each
    section (held out at random; their pixels may appear in training crops, their values never enter the loss), or
    ``None``/``0`` for no validation. Returns the two lists and a description for the model card.
    """
    if validation is None or validation is False or validation == 0:
        return sections, [], {"kind": "none"}
    if isinstance(validation, str) or (isinstance(validation, Sequence) and not isinstance(validation, float)):
        names = [validation] if isinstance(validation, str) else list(validation)
        unknown = sorted(set(names) - {s.name for s in sections})
        if unknown:
            raise ValueError(f"Validation sections {unknown} are not among {[s.name for s in sections]}.")
        train = [s for s in sections if s.name not in names]
        if not train:
            raise ValueError("Every section is held out for validation; keep at least one for training.")
        return train, [s for s in sections if s.name in names], {"kind": "sections", "sections": names}
    fraction = float(validation)
    if not 0 < fraction < 1:
        raise ValueError(f"`validation` as a fraction must be in (0, 1), got {validation!r}.")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for section in sections:
        held = np.zeros(section.n_spots, dtype=bool)
        held[rng.choice(section.n_spots, size=max(1, round(fraction * section.n_spots)), replace=False)] = True
        train.append(subset_section(section, ~held))
        val.append(subset_section(section, held))
    return train, val, {"kind": "spots", "fraction": fraction, "seed": seed}


def denoise_targets(sections: list[Section], n_components: int) -> tuple[list[Section], dict]:
    """The sections with their targets replaced by their projection on the first principal components.

    The components (scikit-learn's PCA) are fitted on the targets of all ``sections`` together, so genes that vary
    together across the training spots keep their shared variation and each spot's gene-by-gene counting noise is
    dropped. Returns the new sections (images shared, not copied) and a record for the model card.
    """
    from dataclasses import replace

    from sklearn.decomposition import PCA

    targets = np.concatenate([s.targets for s in sections if s.n_spots])
    limit = min(targets.shape) - 1
    if not 0 < n_components <= limit:
        raise ValueError(
            f"`target_components={n_components}` must be between 1 and {limit} (one less than the fewest of "
            f"{targets.shape[0]} training spots and {targets.shape[1]} genes); choose fewer components, or None to "
            "train on the measured values."
        )
    pca = PCA(n_components=n_components, svd_solver="full").fit(targets)
    denoised = [
        replace(s, targets=pca.inverse_transform(pca.transform(s.targets)).astype(np.float32)) if s.n_spots else s
        for s in sections
    ]
    explained = float(pca.explained_variance_ratio_.sum())
    logger.info(
        f"Training targets projected on their first {n_components} principal components ({explained:.1%} of their "
        f"variance over {targets.shape[0]} spots); validation spots keep their measured values."
    )
    return denoised, {"components": n_components, "explained_variance": round(explained, 4)}
