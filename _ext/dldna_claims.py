"""The claims ledger: every ``claim(...)`` the pages executed, collected at build time into one table.

In the book build :func:`dldna_lite.notebook.claim` glues one record per call under its own name (``dldna-claim-00001``,
...; MIME type :data:`CLAIM_MIME`: ``{statement, numbers, holds, test, profile, cell}``), the way ``myst_nb.glue``
glues a value without displaying it. Why glue, rather than any output:

* myst-nb drops a ``remove-cell`` cell (where most claims live) before it renders anything, so the doctree has no
  trace of its outputs;
* the notebook that myst-nb writes to ``<build>/jupyter_execute/<docname>.ipynb`` has no outputs at all when the page
  came from jupyter-cache (it writes the notebook it read, not the cached one it merged);
* glued values are extracted from the executed or the cached notebook alike, written to
  ``jupyter_execute/<docname>.glue.json`` and their names kept in ``env.nb_metadata[docname]["glue"]``.

So at ``doctree-read`` (right after myst-nb parsed a page) we read the page's glued claims, attach each to the section
that holds its cell (the record's ``cell`` is a fingerprint of the cell's source; the written notebook's
``source_map`` gives that cell's line, the doctree the line of each section), and keep them in the environment
(``env.dldna_claims``, per page: purged with the page, merged from parallel readers). The directive ``claims-ledger``
leaves a placeholder that ``doctree-resolved`` replaces by the table, in the order of the table of contents; the
ledger page is re-read whenever any page is (``env-get-outdated``), so an incremental build never shows a stale
ledger, and a page that was not re-read keeps its records from the pickled environment.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

CLAIM_MIME = "application/vnd.dldna.claim+json"   # = dldna_lite.notebook.CLAIM_MIME (tests/test_claims_ledger.py)
CLAIM_GLUE_PREFIX = "dldna-claim-"                 # = dldna_lite.notebook.CLAIM_GLUE_PREFIX
TABLE_CLASS = "dldna-claims-ledger"
CLAIM_CALL = re.compile(r"^\s*(?:\w+\.)?claim\(", re.M)          # a line of a page that calls claim(...)
LOGGER = logging.getLogger(__name__)


class claims_ledger(nodes.General, nodes.Element):
    """Placeholder for the ledger table, filled at doctree-resolved."""


class ClaimsLedgerDirective(SphinxDirective):
    has_content = False

    def run(self):
        _ledger_docs(self.env).add(self.env.docname)
        return [claims_ledger()]


def _ledger_docs(env) -> set:
    if not hasattr(env, "dldna_ledger_docs"):
        env.dldna_ledger_docs = set()
    return env.dldna_ledger_docs


def _claims(env) -> dict:
    if not hasattr(env, "dldna_claims"):
        env.dldna_claims = {}
    return env.dldna_claims


def cell_key(source: str) -> str:
    """= :func:`dldna_lite.notebook.cell_key`: the fingerprint of a code cell that a claim record carries."""
    return hashlib.sha1(source.strip().encode("utf8")).hexdigest()[:16]


def glued_claims(glue_data: dict) -> list[dict]:
    """The claim records among a page's glued values (myst-nb's ``<docname>.glue.json``), in the order made."""
    names = sorted(k for k in glue_data if k.startswith(CLAIM_GLUE_PREFIX))
    records = [glue_data[k].get("data", {}).get(CLAIM_MIME) for k in names]
    return [json.loads(r) if isinstance(r, str) else r for r in records if r is not None]


def _sections(doctree, source: str) -> list[tuple[int, str, str]]:
    """``(line, title, anchor)`` of the page's sections, in order (the page title first, anchor "")."""
    out = []
    for section in doctree.findall(nodes.section):
        title = section.next_node(nodes.title)
        line = section.line or (title.line if title is not None else None)
        if title is None or line is None or (section.source and source and section.source != source):
            continue
        anchor = section["ids"][0] if section["ids"] and out else ""
        out.append((line, title.astext(), anchor))
    return out


def _cell_lines(folder: Path, docname: str) -> dict[str, int]:
    """:func:`cell_key` -> source line of every code cell of the notebook myst-nb wrote for the page."""
    path = folder.joinpath(*(docname + ".ipynb").split("/"))
    if not path.is_file():
        return {}
    notebook = json.loads(path.read_text(encoding="utf8"))
    source_map = notebook.get("metadata", {}).get("source_map") or []
    lines = {}
    for index, cell in enumerate(notebook.get("cells", [])):
        source = cell.get("source", "")
        key = cell_key("".join(source) if isinstance(source, list) else source)
        if cell.get("cell_type") == "code" and index < len(source_map):
            lines.setdefault(key, source_map[index])
    return lines


def _collect(app, doctree) -> None:
    """At doctree-read of a notebook page: its claim records, each with the section that holds its cell."""
    env = app.env
    docname = env.docname
    _claims(env).pop(docname, None)
    keys = getattr(env, "nb_metadata", {}).get(docname, {}).get("glue", [])   # set by myst-nb's parse just now
    if not any(str(k).startswith(CLAIM_GLUE_PREFIX) for k in keys):
        notebook = "kernelspec" in env.metadata.get(docname, {})
        if notebook and CLAIM_CALL.search(Path(env.doc2path(docname)).read_text(encoding="utf8")):
            LOGGER.warning("the page calls claim() but its execution left no claim record (an execution cache from "
                           "before the claims ledger? `make book` drops it; or remove <build>/.jupyter_cache)",
                           location=docname)
        return
    folder = Path(env.mystnb_config.output_folder)
    glue_file = folder.joinpath(*(docname + ".glue.json").split("/"))
    records = glued_claims(json.loads(glue_file.read_text(encoding="utf8")))
    sections = _sections(doctree, env.doc2path(docname))
    lines = _cell_lines(folder, docname)
    rows = []
    for record in records:
        line = lines.get(record.get("cell"))
        before = [s for s in sections if line is not None and s[0] <= line] or sections[:1]
        _, title, anchor = before[-1] if before else (None, "", "")
        rows.append({**record, "section": title, "anchor": anchor})
    _claims(env)[docname] = rows


def _purge(app, env, docname) -> None:
    _claims(env).pop(docname, None)
    _ledger_docs(env).discard(docname)


def _merge(app, env, docnames, other) -> None:
    for docname in docnames:
        if docname in _claims(other):
            _claims(env)[docname] = _claims(other)[docname]
        if docname in _ledger_docs(other):
            _ledger_docs(env).add(docname)


def _outdated(app, env, added, changed, removed):
    if added or changed or removed:
        return sorted(_ledger_docs(env) - set(removed))
    return []


def toc_order(env) -> list[str]:
    """Every document in the order of the table of contents (depth first from the root), the rest sorted after."""
    order, seen = [], set()

    def walk(doc):
        if doc in seen:
            return
        seen.add(doc)
        order.append(doc)
        for child in env.toctree_includes.get(doc, []):
            walk(child)

    walk(env.config.root_doc)
    return order + sorted(set(env.all_docs) - seen)


def _cell(*children) -> nodes.entry:
    entry = nodes.entry()
    entry.extend(children)
    return entry


def _paragraph(*children) -> nodes.paragraph:
    para = nodes.paragraph()
    para.extend(children)
    return para


def _link(app, fromdoc, todoc, anchor, text) -> nodes.reference:
    uri = app.builder.get_relative_uri(fromdoc, todoc) + (f"#{anchor}" if anchor else "")
    return nodes.reference("", text, internal=True, refuri=uri)


def _row(app, docname, page, record) -> nodes.row:
    title = app.env.titles[page].astext() if page in app.env.titles else page
    where = _paragraph(_link(app, docname, page, "", title))
    if record.get("section") and record["section"] != title:
        where += [nodes.Text(": "), _link(app, docname, page, record.get("anchor", ""), record["section"])]
    numbers = "; ".join(f"{k} = {v}" for k, v in record.get("numbers", {}).items()) or "(none)"
    test = _paragraph(nodes.literal(text=record["test"])) if record.get("test") else _paragraph(nodes.Text("—"))
    verdict = "holds" if record.get("holds") else "FAILS"
    row = nodes.row()
    row.extend([_cell(where), _cell(_paragraph(nodes.Text(record.get("statement", "")))),
                _cell(_paragraph(nodes.Text(numbers))), _cell(test), _cell(_paragraph(nodes.Text(verdict)))])
    return row


def ledger_table(app, docname) -> list[nodes.Node]:
    """The summary sentence and the table of every claim, in the order of the table of contents."""
    claims = _claims(app.env)
    pages = [page for page in toc_order(app.env) if claims.get(page)]
    records = [(page, r) for page in pages for r in claims[page]]
    profiles = sorted({r.get("profile") for _, r in records if r.get("profile")})
    holding = sum(bool(r.get("holds")) for _, r in records)
    summary = _paragraph(nodes.Text(
        f"{len(records)} claims on {len(pages)} pages, {holding} of them hold; profile "
        f"{', '.join(profiles) or 'unknown'}."))
    summary["classes"].append("dldna-claims-summary")
    headers = ["Page and section", "Statement", "Measured", "Test", "Verdict"]
    table = nodes.table(classes=[TABLE_CLASS])
    group = nodes.tgroup(cols=len(headers))
    table += group
    group.extend(nodes.colspec(colwidth=w) for w in (18, 30, 26, 20, 6))
    head = nodes.thead()
    head += nodes.row("", *(_cell(_paragraph(nodes.Text(h))) for h in headers))
    body = nodes.tbody()
    body.extend(_row(app, docname, page, record) for page, record in records)
    group += [head, body]
    return [summary, table]


def _fill(app, doctree, docname) -> None:
    for node in list(doctree.findall(claims_ledger)):
        node.replace_self(ledger_table(app, docname))


def setup(app):
    app.add_node(claims_ledger)
    app.add_directive("claims-ledger", ClaimsLedgerDirective)
    app.connect("doctree-read", _collect)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _outdated)
    app.connect("doctree-resolved", _fill)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
