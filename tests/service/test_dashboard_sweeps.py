"""The dashboard's sweeps panel in a real headless Chromium: a sweep's leaderboard and its
trials' validation curves on one chart, the best trial drawn in red."""

from __future__ import annotations

from tests.service.browser_helpers import COUNT_COLOUR_JS
from tests.service.sweep_helpers import BASE, SPACE, body_mass, start, wait_for_sweep

BEST_RED = "#d1241f"  # BEST_COLOR of sweeps.js


def test_the_dashboard_draws_a_sweeps_leaderboard_and_curves(stack, api, page, tmp_path):  # noqa: F811
    dataset_id, _ = body_mass(api)
    sweep = start(api, dataset_id=dataset_id, base=BASE, space=SPACE, trials=4,
                  max_epochs=6, seed=5, strategy="random")
    done = wait_for_sweep(api, sweep["id"])
    page.goto(stack.url + "/")
    page.click(f"#sweeps-list tr[data-id='{sweep['id']}']")
    page.wait_for_selector("#sweep-trials tr.best")
    rows = page.locator("#sweep-trials tr")
    assert rows.count() == 4
    assert page.locator("#sweep-trials tr.best td").nth(1).inner_text() == done["best"]["job_id"]
    page.wait_for_function("() => Number(document.getElementById('sweep-chart').dataset.points) >= 6")
    page.wait_for_timeout(300)  # the next animation frame draws
    assert page.evaluate(COUNT_COLOUR_JS, ["sweep-chart", BEST_RED]) > 50
    page.screenshot(path=str(tmp_path / "dashboard-sweep.png"), full_page=True)
    assert page.problems == []
