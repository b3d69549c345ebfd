"""A small, learnable stand-in for FashionIQ, in its official layout, drawn procedurally.

Each garment has four attributes (colour, pattern, sleeves, length). A query's target differs from its
candidate in one or two of them and its captions name only what changes ("is red", "has long sleeves"),
so the text alone cannot find the target: the rest has to be read off the candidate image.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from itertools import product
from pathlib import Path

from PIL import Image, ImageDraw

from fashionrec.atomic import atomic_write_json
from fashionrec.data.fashioniq import CATEGORIES
from fashionrec.errors import UserError

COLOURS = {
    "red": (200, 35, 40), "orange": (245, 135, 25), "yellow": (240, 210, 40), "green": (40, 145, 60),
    "blue": (35, 75, 200), "purple": (125, 55, 170), "pink": (245, 140, 190), "black": (35, 35, 35),
}  # fmt: skip
PATTERNS = ("solid", "stripes", "dots")
SLEEVES = ("none", "short", "long")
LENGTHS = ("short", "medium", "long")
PREFIX = {"dress": "D", "shirt": "S", "toptee": "T"}
VAL_FRACTION = 0.25
TARGETS_PER_CANDIDATE = {"train": 3, "val": 1}

# Caption phrasings per attribute value; two annotators rarely say a change the same way.
PHRASES: dict[str, dict[str, list[str]]] = {
    "colour": {c: [f"is {c}", f"is {c} in color", f"is a {c} one", f"{c} instead"] for c in COLOURS},
    "pattern": {
        "solid": ["is plain", "is a solid color", "has no pattern"],
        "stripes": ["has stripes", "is striped", "has horizontal stripes"],
        "dots": ["has polka dots", "is dotted", "has a dotted pattern"],
    },
    "sleeves": {
        "none": ["is sleeveless", "has no sleeves"],
        "short": ["has short sleeves", "is short sleeved"],
        "long": ["has long sleeves", "is long sleeved"],
    },
}
LENGTH_PHRASES = {
    "dress": {"short": ["is a mini dress", "is short"], "medium": ["is knee length", "is midi length"],
              "long": ["is a maxi dress", "is floor length"]},
    "top": {"short": ["is cropped", "is a cropped one"], "medium": ["is regular length", "is waist length"],
            "long": ["is long", "is tunic length"]},
}  # fmt: skip


@dataclass(frozen=True)
class Garment:
    """What a demo picture shows; the captions are derived from the differences of two of these."""

    category: str
    colour: str
    pattern: str
    sleeves: str
    length: str


ATTRIBUTES = ("colour", "pattern", "sleeves", "length")
CHOICES = {"colour": tuple(COLOURS), "pattern": PATTERNS, "sleeves": SLEEVES, "length": LENGTHS}


def make_demo_data(
    out: str | Path,
    images: int = 600,
    seed: int = 0,
    *,
    val_images: int | None = None,
    image_size: int = 128,
    image_format: str = "png",
) -> Path:
    """Write a demo dataset under `out`: captions/, image_splits/, images/ and attributes.json.

    `val_images` is each category's validation gallery (default: a quarter of its images); Recall@50 says
    something only when a gallery holds well over 50 images."""
    root = Path(out)
    if images < 2 * len(CATEGORIES):
        raise UserError(f"--images must be at least {2 * len(CATEGORIES)}, got {images}")
    if val_images is not None and not 1 <= val_images < images // len(CATEGORIES):
        raise UserError(
            f"--val-images must be from 1 to {images // len(CATEGORIES) - 1} (each category's images, "
            f"less at least one for training), got {val_images}"
        )
    if image_format not in ("png", "jpg"):
        raise UserError(f"unknown image format {image_format!r} (choose from png, jpg)")
    if root.exists() and not root.is_dir():
        raise UserError(f"demo data output is not a folder: {root}")
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    attributes: dict[str, dict[str, str]] = {}
    for c, category in enumerate(CATEGORIES):
        count = images // len(CATEGORIES) + (c < images % len(CATEGORIES))
        n_val = val_images if val_images is not None else max(1, round(count * VAL_FRACTION))
        number = 0
        for split, n in (("train", count - n_val), ("val", n_val)):
            garments = _sample_garments(rng, category, n)
            ids = [f"{PREFIX[category]}{number + k:06d}" for k in range(n)]
            number += n
            for image_id, garment in zip(ids, garments, strict=True):
                picture = draw_garment(garment, image_size, rng)
                picture.save(root / "images" / f"{image_id}.{image_format}", quality=92)
                attributes[image_id] = asdict(garment)
            queries = _make_queries(rng, ids, garments, TARGETS_PER_CANDIDATE[split])
            atomic_write_json(root / "captions" / f"cap.{category}.{split}.json", queries)
            atomic_write_json(root / "image_splits" / f"split.{category}.{split}.json", ids)
    atomic_write_json(root / "attributes.json", attributes)
    return root


def differences(a: Garment, b: Garment) -> list[str]:
    """The attributes whose values differ between two garments."""
    return [name for name in ATTRIBUTES if getattr(a, name) != getattr(b, name)]


def _sample_garments(rng: random.Random, category: str, n: int) -> list[Garment]:
    """A walk through attribute space: most garments are a 1-2 attribute change of an earlier one (so
    queries have targets nearby), and repeats are avoided while unused combinations remain."""
    total = len(list(product(*CHOICES.values())))
    garments: list[Garment] = []
    seen: set[Garment] = set()
    for _ in range(n):
        for _attempt in range(50):
            if garments and rng.random() < 0.7:
                garment = _mutate(rng, rng.choice(garments), rng.randint(1, 2))
            else:
                garment = Garment(category, *(rng.choice(CHOICES[a]) for a in ATTRIBUTES))
            if garment not in seen or len(seen) >= total:
                break
        seen.add(garment)
        garments.append(garment)
    return garments


def _mutate(rng: random.Random, garment: Garment, changes: int) -> Garment:
    for name in rng.sample(ATTRIBUTES, changes):
        value = rng.choice([v for v in CHOICES[name] if v != getattr(garment, name)])
        garment = replace(garment, **{name: value})
    return garment


def _make_queries(rng: random.Random, ids: list[str], garments: list[Garment], per_candidate: int) -> list[dict]:
    """For each candidate, up to `per_candidate` targets that differ from it in one or two attributes."""
    queries = []
    for i, candidate in enumerate(garments):
        near = [j for j, g in enumerate(garments) if 1 <= len(differences(candidate, g)) <= 2]
        for j in rng.sample(near, min(per_candidate, len(near))):
            captions = _captions(rng, candidate, garments[j])
            queries.append({"candidate": ids[i], "target": ids[j], "captions": captions})
    return queries


def _captions(rng: random.Random, candidate: Garment, target: Garment) -> list[str]:
    """Two annotator-style captions: one per changed attribute, or two phrasings of a single change."""
    changed = differences(candidate, target)
    rng.shuffle(changed)
    if len(changed) == 2:
        return [rng.choice(_phrases(target, changed[0])), rng.choice(_phrases(target, changed[1]))]
    return rng.sample(_phrases(target, changed[0]), 2)


def _phrases(garment: Garment, attribute: str) -> list[str]:
    value = getattr(garment, attribute)
    if attribute == "length":
        return LENGTH_PHRASES["dress" if garment.category == "dress" else "top"][value]
    return PHRASES[attribute][value]


def draw_garment(garment: Garment, size: int, rng: random.Random) -> Image.Image:
    """The garment on a plain light background, drawn at twice the size and reduced (smooth edges),
    with a little jitter in background tone, scale and position so pixels alone do not identify it."""
    big = 2 * size
    tone = rng.randint(228, 250)
    background = (tone, tone - rng.randint(0, 6), tone - rng.randint(0, 10))
    scale, dx, dy = rng.uniform(0.88, 1.0), rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03)

    def to_px(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(((x - 0.5) * scale + 0.5 + dx) * big, ((y - 0.5) * scale + 0.5 + dy) * big) for x, y in points]

    shapes = [to_px(p) for p in _silhouette(garment)]
    mask = Image.new("L", (big, big), 0)
    for shape in shapes:
        ImageDraw.Draw(mask).polygon(shape, fill=255)
    canvas = Image.new("RGB", (big, big), background)
    canvas.paste(_fabric(garment, big, scale), mask=mask)
    colour = COLOURS[garment.colour]
    edge = tuple(max(0, v - 70) for v in colour)
    draw = ImageDraw.Draw(canvas)
    for shape in shapes:
        draw.polygon(shape, outline=edge, width=max(1, big // 128))
    return canvas.resize((size, size), Image.Resampling.BOX)


def _fabric(garment: Garment, big: int, scale: float) -> Image.Image:
    """A canvas-sized swatch of the garment's colour and pattern, cut out by the silhouette mask."""
    colour = COLOURS[garment.colour]
    fabric = Image.new("RGB", (big, big), colour)
    light = sum(colour) / 3 > 150
    ink = (70, 70, 70) if light else (245, 245, 245)
    draw = ImageDraw.Draw(fabric)
    period = max(4.0, 0.08 * big * scale)
    if garment.pattern == "stripes":
        for k in range(int(big / period) + 1):
            y = k * period
            draw.rectangle([0, y, big, y + period * 0.4], fill=ink)
    elif garment.pattern == "dots":
        radius = period * 0.2
        for row in range(int(big / period) + 1):
            for col in range(int(big / period) + 1):
                x, y = (col + 0.5 * (row % 2)) * period, row * period + period / 2
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=ink)
    return fabric


def _silhouette(g: Garment) -> list[list[tuple[float, float]]]:
    """Polygons in unit coordinates: the body of the garment, then its sleeves."""
    if g.category == "dress":
        hem = {"short": 0.62, "medium": 0.76, "long": 0.93}[g.length]
        flare = {"short": 0.19, "medium": 0.23, "long": 0.27}[g.length]
        body = [(0.40, 0.14), (0.45, 0.17), (0.55, 0.17), (0.60, 0.14), (0.62, 0.26), (0.59, 0.42),
                (0.5 + flare, hem), (0.5 - flare, hem), (0.41, 0.42), (0.38, 0.26)]  # fmt: skip
        shoulder_x, top = 0.39, 0.15
    elif g.category == "shirt":
        hem = {"short": 0.50, "medium": 0.65, "long": 0.82}[g.length]
        body = [(0.34, 0.17), (0.45, 0.14), (0.50, 0.22), (0.55, 0.14), (0.66, 0.17), (0.67, 0.35),
                (0.67, hem), (0.33, hem), (0.33, 0.35)]  # fmt: skip
        shoulder_x, top = 0.34, 0.17
    else:
        hem = {"short": 0.46, "medium": 0.60, "long": 0.76}[g.length]
        body = [(0.37, 0.18), (0.44, 0.16), (0.47, 0.20), (0.50, 0.21), (0.53, 0.20), (0.56, 0.16),
                (0.63, 0.18), (0.62, 0.36), (0.64, hem), (0.36, hem), (0.38, 0.36)]  # fmt: skip
        shoulder_x, top = 0.37, 0.18
    shapes = [body]
    if g.sleeves != "none":
        reach = {"short": (0.09, 0.13), "long": (0.15, 0.40)}[g.sleeves]
        x, y = shoulder_x - reach[0], top + reach[1]  # the cuff's outer corner
        left = [(shoulder_x + 0.01, top), (x, y), (x + 0.06, y + 0.03), (shoulder_x + 0.02, top + 0.15)]
        shapes += [left, [(1.0 - x, y) for x, y in left]]
    return shapes
