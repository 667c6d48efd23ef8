"""The README's Quick start and curl walkthrough are what the code does."""

import json
import os
import re
import subprocess

from tests.readme_helpers import README, section


def bash_blocks(title: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section(title), flags=re.S)


def test_quick_start_has_exactly_the_two_commands_that_ci_runs():
    commands = [line.split("#")[0].strip() for line in bash_blocks("Quick start")[0].splitlines()]
    assert [c for c in commands if c] == ["./dev up", "./dev test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./dev test" in ci


def test_curl_walkthrough_runs_against_the_live_service(stack):
    script = bash_blocks("Walkthrough with curl")[0]
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "API": stack.url})
    assert done.returncode == 0, done.stderr + done.stdout
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    job, history, prediction = (json.loads(line) for line in lines[-3:])
    assert job["status"] == "succeeded" and job["progress"]["epoch"] == 300
    assert [e["epoch"] for e in history["epochs"]] == [299, 300]
    assert prediction["labels"] == [0, 1, 1, 0]


def test_tables_walkthrough_runs_against_the_live_service(stack):
    script = bash_blocks("Tables: a CSV with text columns and missing values")[0]
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "API": stack.url},
                          cwd=README.parent)
    assert done.returncode == 0, done.stderr + done.stdout
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines[0] == "island categorical 0 ['Biscoe', 'Dream', 'Torgersen']"
    assert "sex categorical 11 ['female', 'male']" in lines
    assert "target: ['species'] ['Adelie', 'Chinstrap', 'Gentoo']" in lines
    metrics = json.loads(lines[-6])
    assert metrics["val_metric"] >= 0.97, metrics
    prediction = json.loads(lines[-5])
    assert prediction["labels"] == ["Gentoo", "Adelie"]
    header, *rows = lines[-4:]
    assert header.endswith('"species_predicted","p_Adelie","p_Chinstrap","p_Gentoo"'), header
    assert len(rows) == 3 and all('"Adelie"' in row for row in rows)
