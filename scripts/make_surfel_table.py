"""Write ``src/brainmets/evaluate/surfels.json``: the marching-cubes surface pieces of the 256
configurations of a 2x2x2 voxel cube (run once; needs scikit-image, not a brainmets dependency).

For each configuration code (bit ``b`` set when the cube corner ``((b>>2)&1, (b>>1)&1, b&1)``
is inside the mask) the file lists the area vectors (half the cross product of two edges) of
the triangles that the classic (Lorensen) marching-cubes table places in that cube at the
0.5 iso-level. A triangle's area under voxel spacing ``(s0, s1, s2)`` is the norm of its area
vector scaled by ``(s1*s2, s0*s2, s0*s1)``; :mod:`brainmets.evaluate.surface` weights each
border cube's distance by the summed area of its triangles (surface-distance percentiles as
in the surface-distance measures that the BraTS 2023 lesion-wise evaluation uses).

    pip install scikit-image && python scripts/make_surfel_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from skimage.measure import marching_cubes

OUT = Path(__file__).resolve().parents[1] / "src/brainmets/evaluate/surfels.json"


def area_vectors(code: int) -> list[list[float]]:
    if code in (0, 255):
        return []
    if bin(code).count("1") > 4:
        # the surface of a configuration is the surface of its complement, facing the other
        # way: use the complement's triangulation (skimage's Lorensen table adds tunnels for
        # some five- and six-corner configurations that the complement does not have)
        return [[-x for x in v] for v in area_vectors(255 - code)]
    cube = np.zeros((2, 2, 2), np.float32)
    for bit in range(8):
        if code >> bit & 1:
            cube[(bit >> 2) & 1, (bit >> 1) & 1, bit & 1] = 1.0
    verts, faces, _, _ = marching_cubes(cube, 0.5, method="lorensen")
    out = []
    for a, b, c in faces:
        n = 0.5 * np.cross(verts[b] - verts[a], verts[c] - verts[a])
        out.append([round(float(x), 6) for x in n])
    return out


def main() -> None:
    table = {
        "about": "marching-cubes triangle area vectors per 2x2x2 cube configuration; "
        "written by scripts/make_surfel_table.py",
        "corner_of_bit": "bit b <-> corner ((b>>2)&1, (b>>1)&1, b&1)",
        "area_vectors": [area_vectors(code) for code in range(256)],
    }
    OUT.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
