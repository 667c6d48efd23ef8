"""The dashboard at / in a real headless Chromium (Debian's, driven by Playwright from PyPI).

The browser tests skip when /usr/bin/chromium or the playwright package is missing; CI installs
both (apt: chromium; pip: playwright). `playwright install` is never needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.records import JobStatus, new_id
from core.store import Store
from tests.service.events_helpers import (KEYS, api_process, put_queued_job, record,
                                          settings_for)
from tests.service.helpers import blobs, classifier, started, wait_for_job
from tests.service.browser_helpers import COUNT_COLOUR_JS, LOSS_BLUE, VAL_LOSS_ORANGE
from tests.service.table_helpers import PENGUINS

def points(page, canvas_id: str = "loss-chart") -> int:
    return int(page.get_attribute(f"#{canvas_id}", "data-points"))


def wait_for_points(page, at_least: int, canvas_id: str = "loss-chart") -> int:
    page.wait_for_function("([id, n]) => Number(document.getElementById(id).dataset.points) >= n",
                           arg=[canvas_id, at_least])
    return points(page, canvas_id)


def test_dashboard_draws_a_job_as_it_trains(stack, api, page, tmp_path):
    X, y = blobs(n=4000, seed=5)
    answer = api.post("/v1/jobs", json={
        "network": classifier(hidden=24), "data": {"X": X.tolist(), "y": y.tolist()},
        "training": {"epochs": 20_000, "validation_split": 0.2, "learning_rate": 0.002}})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    try:
        page.goto(stack.url + "/")
        page.locator(f'tr[data-id="{job_id}"]').click()  # appears at the next poll of the list
        assert page.url.endswith(f"#job={job_id}")
        first = wait_for_points(page, 3)
        grown = wait_for_points(page, first + 10)
        assert grown > first  # the curve grows while the job trains
        assert page.text_content("#detail-status") == "running"
        assert page.text_content("#stream-state") == "live"
        assert page.evaluate(COUNT_COLOUR_JS, ["loss-chart", LOSS_BLUE]) > 100
        assert page.evaluate(COUNT_COLOUR_JS, ["loss-chart", VAL_LOSS_ORANGE]) > 50
        assert points(page, "grad-chart") >= grown
        assert page.locator("#grad-legend > span").count() == 2  # one entry per layer
        assert page.evaluate(COUNT_COLOUR_JS, ["grad-chart", LOSS_BLUE]) > 50  # layer 1
        page.screenshot(path=str(tmp_path / "dashboard-live.png"))
    finally:
        api.post(f"/v1/jobs/{job_id}/cancel")
    job = wait_for_job(api, job_id)
    assert job["status"] == "canceled"
    # The end event is drawn at the next animation frame, after the stream says finished.
    page.wait_for_function("() => document.getElementById('stream-state').textContent "
                           "=== 'finished' && document.getElementById('detail-status')"
                           ".textContent === 'canceled'")
    # Every epoch the job trained reached the chart, none twice.
    assert points(page) == job["progress"]["epoch"] == len(api.get(
        f"/v1/jobs/{job_id}/history").json()["epochs"])
    page.screenshot(path=str(tmp_path / "dashboard-ended.png"))
    assert page.problems == []


def test_dashboard_asks_for_the_key_and_replays_a_finished_job(valkey, redis_client, page):
    prefix = f"dash{os.getpid()}"
    store = Store(redis_client, prefix)
    job_id = new_id("job")  # ids of another form read as missing
    worker = started(store, settings_for(store), put_queued_job(store, "alice", job_id, epochs=30))
    for epoch in range(1, 31):
        worker.append_epoch(record(epoch), epoch=epoch)
    worker.finish(JobStatus.SUCCEEDED, model_id=new_id("model"))
    urls = []
    page.on("request", lambda request: urls.append(request.url))
    with api_process(valkey.url, prefix, KEYS) as client:
        page.goto(str(client.base_url) + "/")
        page.wait_for_selector("#notice:not([hidden])")
        assert "needs an API key" in page.text_content("#notice")
        page.fill("#key-input", KEYS["alice"])
        page.click("#key-form button[type=submit]")
        page.locator(f'tr[data-id="{job_id}"]').click()
        assert wait_for_points(page, 30) == 30
        page.wait_for_function("() => document.getElementById('stream-state').textContent "
                               "=== 'finished'")
        assert page.text_content("#detail-status") == "succeeded"
        assert page.is_hidden("#notice")
        assert "layer 1 (8 tanh)" in page.text_content("#grad-legend")
        page.check("#loss-log")  # loss 1/epoch on a log axis: still drawn, no errors
        page.wait_for_selector("#loss-chart[data-scale=log]")
        assert page.evaluate(COUNT_COLOUR_JS, ["loss-chart", LOSS_BLUE]) > 50
        # The key stays in this browser and travels in headers only.
        page.reload()
        page.wait_for_selector(f'tr[data-id="{job_id}"]')
        assert wait_for_points(page, 30) == 30  # #job= in the URL reselects it
    assert urls and not any(KEYS["alice"] in url for url in urls)
    assert page.problems == []


def test_page_and_assets_are_served_with_a_strict_policy(api):
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/dashboard.js">' in page.text
    for name, kind in [("dashboard.js", "text/javascript"), ("chart.js", "text/javascript"),
                       ("dataset.js", "text/javascript"), ("model.js", "text/javascript"),
                       ("format.js", "text/javascript"),
                       ("api.js", "text/javascript"), ("dashboard.css", "text/css")]:
        asset = api.get(f"/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    missing = api.get("/static/app.py")
    assert missing.status_code == 404 and "dashboard is at /" in missing.json()["error"]["message"]
    assert "/" not in api.get("/openapi.json").json()["paths"]


def test_dashboard_shows_the_columns_of_a_jobs_dataset(stack, api, page, tmp_path):
    import palmerpenguins

    csv = (Path(palmerpenguins.__file__).parent / "data" / "penguins.csv").read_bytes()
    dataset = api.post("/v1/datasets", files={"file": ("penguins.csv", csv)},
                       data={"target": "species"}).json()
    job = api.post("/v1/jobs", json={"dataset_id": dataset["id"], "network": classifier(),
                                     "training": {"epochs": 2}}).json()
    page.goto(f"{stack.url}/#job={job['id']}")
    page.wait_for_selector("#data:not([hidden])")
    rows = page.locator("#columns-table tbody tr")
    assert rows.count() == 8                          # 7 feature columns, then the target
    assert rows.nth(0).text_content() == "islandcategorical0Biscoe, Dream, Torgersen"
    assert "11" in rows.nth(5).text_content()         # sex: 11 missing
    assert "Adelie, Chinstrap, Gentoo" in rows.nth(7).text_content()
    assert dataset["id"] in page.text_content("#data-title")
    page.screenshot(path=str(tmp_path / "dashboard-columns.png"), full_page=True)
    assert page.problems == []


def test_api_docs_render_with_the_network_off(browser, stack):
    """Every request the page makes to anywhere but the service is refused, as offline."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    elsewhere = []

    def only_the_service(route):
        if route.request.url.startswith(stack.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.goto(stack.url + "/docs")
    # Rendered by the page's script, from the OpenAPI document: the title and an operation.
    page.wait_for_function("document.body.innerText.includes('backprop-service') && "
                           "document.body.innerText.includes('/v1/jobs')", timeout=60_000)
    assert elsewhere == []
    context.close()


# -- the job list's metric column and a finished job's model view ---------------------------------
SCREENSHOT = os.environ.get("BACKPROP_DASHBOARD_SCREENSHOT")
"""Where test_models_are_shown_with_their_evaluation also saves its page (docs/dashboard.png
is made so: BACKPROP_DASHBOARD_SCREENSHOT=docs/dashboard.png pytest -k evaluation)."""

NO_SCROLL_JS = """() => [document.scrollingElement, document.querySelector('.jobs .table-scroll')]
  .map((box) => [box.scrollWidth, box.clientWidth])"""


@pytest.fixture(scope="module")
def trained(stack):
    """Jobs of each kind the model view tells apart, trained to the end on small data:
    a penguin species classifier and a body mass regression with test rows, a blobs classifier
    watching f1_macro without test rows, and a job canceled with a long progress label."""
    import httpx

    with httpx.Client(base_url=stack.url, timeout=60) as api:
        csv = PENGUINS.read_bytes()
        species = api.post("/v1/datasets", files={"file": ("penguins.csv", csv)},
                           data={"target": "species"}).json()["id"]
        mass = api.post("/v1/datasets", files={"file": ("penguins.csv", csv)},
                        data={"target": "body_mass_g"}).json()["id"]
        held_out = {"epochs": 15, "validation_split": 0.2, "test_split": 0.25,
                    "learning_rate": 0.01}
        X, y = blobs(n=300, seed=3)
        bodies = {
            "species": {"dataset_id": species, "network": classifier(), "training": held_out},
            "mass": {"dataset_id": mass, "training": held_out, "network": {
                "layers": [{"units": 16, "activation": "relu"},
                           {"units": 1, "activation": "identity"}], "loss": "squared_error"}},
            "blobs": {"data": {"X": X.tolist(), "y": y.tolist()}, "network": classifier(),
                      "training": {"epochs": 10, "validation_split": 0.2,
                                   "metric": "f1_macro"}},
            "long": {"data": {"X": X.tolist(), "y": y.tolist()}, "network": classifier(),
                     "training": {"epochs": 99_999}},
        }
        ids = {}
        for name, body in bodies.items():
            answer = api.post("/v1/jobs", json=body)
            assert answer.status_code == 202, answer.text
            ids[name] = answer.json()["id"]
        api.post(f"/v1/jobs/{ids['long']}/cancel")
        jobs = {name: wait_for_job(api, job_id, timeout_s=120) for name, job_id in ids.items()}
        for name in ("species", "mass", "blobs"):
            assert jobs[name]["status"] == "succeeded", jobs[name]
        models = {name: api.get(f"/v1/models/{jobs[name]['model_id']}").json()
                  for name in ("species", "mass", "blobs")}
    return jobs, models


def shown_metric(job: dict) -> tuple[str, float]:
    """What the list's metric column should show for a job: (name, value)."""
    metrics = job["metrics"]
    if metrics.get("val_metric") is not None:
        return f"val {metrics['metric_name']}", metrics["val_metric"]
    return metrics["metric_name"], metrics["metric"]


def test_job_list_shows_the_metric_and_fits_1400_px(stack, trained, page):
    jobs, _ = trained
    page.goto(stack.url + "/")
    for job in jobs.values():
        page.wait_for_selector(f'tr[data-id="{job["id"]}"]')
    listed = page.locator("#jobs-table tbody tr").count()
    assert listed >= len(jobs)
    for name in ("species", "mass", "blobs"):
        cell = page.locator(f'tr[data-id="{jobs[name]["id"]}"] td.metric')
        metric, value = shown_metric(jobs[name])
        assert float(cell.get_attribute("data-value")) == value  # every digit, as the API's
        assert float(cell.locator("span").text_content()) == pytest.approx(value, rel=1e-3)
        assert cell.locator("small").text_content() == metric
    assert page.locator(f'tr[data-id="{jobs["blobs"]["id"]}"] td.metric small'
                        ).text_content() == "val f1_macro"
    assert page.locator(f'tr[data-id="{jobs["mass"]["id"]}"] td.metric small'
                        ).text_content() == "val r2"
    # No sideways scroll, of the page or of the list, with every row's id whole in its title.
    for scroll_width, client_width in page.evaluate(NO_SCROLL_JS):
        assert scroll_width <= client_width
    for job in jobs.values():
        assert page.get_attribute(f'tr[data-id="{job["id"]}"] code', "title") == job["id"]
    assert page.problems == []


def test_models_are_shown_with_their_evaluation(stack, trained, page, tmp_path):
    jobs, models = trained

    # A classifier with test rows: its confusion matrix, cell by cell, and its importances.
    model = models["species"]
    page.goto(f"{stack.url}/#job={jobs['species']['id']}")
    page.wait_for_selector("#detail-model table.confusion")
    matrix = model["test_confusion_matrix"]
    assert page.locator(".confusion thead th").all_text_contents()[1:] == matrix["labels"]
    assert page.locator(".confusion tbody th").all_text_contents() == matrix["labels"]
    counts = [[int(cell.get_attribute("data-count")) for cell in row.locator("td").all()]
              for row in page.locator(".confusion tbody tr").all()]
    assert counts == matrix["counts"]
    assert sum(map(sum, counts)) == model["test_rows"] > 0
    assert f"Test rows ({model['test_rows']})" in page.text_content("#detail-model")
    accuracy = page.text_content('#detail-model [data-metric="accuracy"] dd')
    assert float(accuracy) == pytest.approx(model["test_metrics"]["accuracy"], rel=1e-3)
    ranked = sorted(model["feature_importance"], key=lambda f: -f["importance"])
    assert page.locator(".importance-row span:first-child").all_text_contents() == \
        [f["column"] for f in ranked]
    assert "(test rows)" in page.text_content("#detail-importance h4")
    for scroll_width, client_width in page.evaluate(NO_SCROLL_JS):
        assert scroll_width <= client_width
    page.screenshot(path=SCREENSHOT or str(tmp_path / "dashboard-model.png"))

    # A regression with test rows: r2, rmse and mae in grams; no confusion matrix.
    model = models["mass"]
    page.locator(f'tr[data-id="{jobs["mass"]["id"]}"]').click()
    page.wait_for_selector(f'#detail-model[data-model="{model["id"]}"]:not([hidden]) '
                           '.test-scores')
    for name in ("r2", "rmse", "mae"):
        shown = page.text_content(f'#detail-model [data-metric="{name}"] dd')
        assert float(shown) == pytest.approx(model["test_metrics"][name], rel=1e-3)
    assert model["test_metrics"]["rmse"] > 50  # grams, not z-scores
    assert page.locator("#detail-model .confusion").count() == 0
    assert "units of body_mass_g" in page.text_content("#detail-model")
    assert page.locator(".importance-row span:first-child").all_text_contents() == \
        [f["column"] for f in sorted(model["feature_importance"], key=lambda f: -f["importance"])]

    # No test rows: say so and how to get them; importance from the validation rows.
    model = models["blobs"]
    page.locator(f'tr[data-id="{jobs["blobs"]["id"]}"]').click()
    page.wait_for_selector(f'#detail-model[data-model="{model["id"]}"]:not([hidden]) '
                           '.no-test-rows')
    assert "training.test_split" in page.text_content(".no-test-rows")
    assert "no confusion matrix" in page.text_content(".no-test-rows")
    assert "(validation rows)" in page.text_content("#detail-importance h4")
    assert page.locator(".importance-row span:first-child").count() == 4

    # A job without a model: no model view.
    page.locator(f'tr[data-id="{jobs["long"]["id"]}"]').click()
    page.wait_for_selector("#detail-model", state="hidden")
    assert page.problems == []
