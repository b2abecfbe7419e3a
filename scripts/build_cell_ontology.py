"""Build cytoatlas' Cell Ontology table from the CL release shipped in ``cellxgene-ontology-guide``.

The package (MIT; CL itself is CC BY 4.0) is 98 MB, almost all of it other ontologies, so cytoatlas ships the one
table it needs, derived here: every CL term's name, exact synonyms and ancestors with their distances, the
replacements of deprecated terms, and the versions it came from. Run it after upgrading the guide::

    pip install cellxgene-ontology-guide==1.11.1
    python scripts/build_cell_ontology.py            # writes src/cytoatlas/celltypes/data/cl.json.gz

``tests/test_celltypes.py`` rebuilds the table from the installed package and checks it equals the shipped one.
"""

from __future__ import annotations

import argparse
import gzip
import json
from importlib import metadata
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "cytoatlas" / "celltypes" / "data" / "cl.json.gz"


def build() -> dict:
    """The table as a JSON-ready dict, from the installed ``cellxgene-ontology-guide``."""
    from cellxgene_ontology_guide.supported_versions import CXGSchema

    schema = CXGSchema()
    cl = schema.ontology("CL")
    terms, replaced = {}, {}
    for term_id in sorted(cl):
        t = cl[term_id]
        if t.get("deprecated"):
            # only replacements that are live CL terms (some point to other ontologies, e.g. CLO)
            if t.get("replaced_by") in cl and not cl[t["replaced_by"]].get("deprecated"):
                replaced[term_id] = t["replaced_by"]
            continue
        ancestors = dict(sorted(t.get("ancestors", {}).items()))
        terms[term_id] = [t["label"], sorted(set(t.get("synonyms", []))), ancestors]
    return {"source": f"cellxgene-ontology-guide {metadata.version('cellxgene-ontology-guide')}",
            "schema": schema.version, "cl_version": schema.supported_ontologies["CL"]["version"],
            "terms": terms, "replaced_by": dict(sorted(replaced.items()))}


def write(table: dict, path: Path) -> None:
    """Write ``table`` gzip-compressed, byte-reproducibly (no file name or time in the gzip header)."""
    data = json.dumps(table, separators=(",", ":"), sort_keys=True).encode()
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as fh:
        fh.write(data)


def main() -> None:
    """Build the table and write it (``--out`` to write elsewhere)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = build()
    write(table, args.out)
    print(f"{args.out}: CL {table['cl_version']} from {table['source']}, {len(table['terms'])} terms, "
          f"{len(table['replaced_by'])} deprecated terms with a replacement, {args.out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
