"""Write ``lkr/data/astronaut_face.json``: MTCNN's face on scikit-image's public-domain
``astronaut`` photo (Eileen Collins, NASA), cropped as in training. ``make figures`` draws Fig. 2
(the local key regions of Eq. 1-4) on this face without running MTCNN or reading any dataset;
``tests/test_figures.py`` checks that MTCNN still finds these numbers.

    python scripts/astronaut_face.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def astronaut_record() -> dict:
    """MTCNN's (only) face on the astronaut: box and points in the photo, the square region cut
    out of it, and the box and points in 48x48 crop coordinates."""
    from PIL import Image
    from skimage import data

    from lkr.predict import find_faces

    faces = find_faces(Image.fromarray(data.astronaut()))
    if len(faces) != 1:
        raise SystemExit(f"astronaut_face: expected one face on the astronaut, MTCNN found {len(faces)}")
    f = faces[0]
    r = lambda a: [round(float(x), 3) for x in a.reshape(-1)]  # noqa: E731
    return {"photo": "skimage.data.astronaut()", "box": r(f.box), "points": r(f.points),
            "region": [int(x) for x in f.region], "box48": r(f.box48), "points48": r(f.points48),
            "landmarks_detected": bool(f.landmarks_detected)}


def main() -> int:
    rec = astronaut_record()
    out = REPO / "lkr" / "data" / "astronaut_face.json"
    out.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"{out}: box48 {rec['box48']}, points48 {rec['points48']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
