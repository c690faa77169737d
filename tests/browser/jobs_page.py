"""Drives the jobs page in a real headless Chromium, as a user would.

Loads the page, enters the API key, starts an import (the request a user
would send with curl), watches its progress bar move until the job is
COMPLETED, creates an export with the page's form, follows its download
link and counts the file's rows. Takes screenshots, and fails on any error
in the browser's console. Prints what it saw as one JSON line.

Run by tests/it/browser.rs: python jobs_page.py URL KEY IMPORT_BODY OUT_DIR
SIGNAL. The test holds the import's first write until the page shows the
job (this script then creates the SIGNAL file), so the page sees it run.
"""

import gzip
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def wait_for(what, check, timeout=120.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except StaleElementReferenceException:
            # The page redrew the table between finding a row and reading
            # it (it follows the jobs live): look again.
            value = None
        if value:
            return value
        time.sleep(every)
    fail(f"timed out waiting for {what}")


def cell(row, css):
    found = row.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def main():
    url, key, import_body, out, signal = sys.argv[1:6]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1400,900"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        run(driver, url, key, import_body, out, signal)
    finally:
        driver.quit()


def run(driver, url, key, import_body, out, signal):
    driver.get(url)
    if "ferry" not in driver.title:
        fail(f"the page's title is {driver.title!r}")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "use-key").click()
    wait_for("the jobs to show", lambda: driver.find_element(By.ID, "jobs").is_displayed())

    # An import, started as a user would start one from a shell.
    request = urllib.request.Request(
        f"{url}v1/imports", data=import_body.encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        job_id = json.load(response)["jobId"]

    # Watch its row: the bar's value and the rows read, until COMPLETED.
    selector = f'#imports tr[data-id="{job_id}"]'
    seen, rows_seen, running_shot = [], [], False

    def completed():
        nonlocal running_shot
        rows = driver.find_elements(By.CSS_SELECTOR, selector)
        if not rows:
            return False
        row = rows[0]
        if not os.path.exists(signal):
            open(signal, "w").close()
        try:
            status = cell(row, ".status").text
            pct = float(cell(row, "[role=progressbar]").get_attribute("aria-valuenow"))
            read = cell(row, ".rows").text.split(" read")[0]
        except Exception:  # the row was re-rendered under us
            return False
        if not seen or seen[-1] != (status, pct):
            seen.append((status, pct))
        if not rows_seen or rows_seen[-1] != read:
            rows_seen.append(read)
        if status == "RUNNING" and 0 < pct < 100 and not running_shot:
            driver.save_screenshot(f"{out}/jobs-page-running.png")
            running_shot = True
        if status in ("FAILED", "CANCELLED"):
            fail(f"the import ended {status}: {row.text}")
        return status == "COMPLETED"

    wait_for("the import to complete", completed)
    moving = [pct for status, pct in seen if status == "RUNNING" and 0 < pct < 100]
    if not moving:
        fail(f"the progress bar never showed a running job part-way: {seen}")
    if seen[-1] != ("COMPLETED", 100.0):
        fail(f"the bar did not end full: {seen}")
    pcts = [pct for _, pct in seen]
    if pcts != sorted(pcts):
        fail(f"the bar went backwards: {seen}")

    # An export, with the page's form; then its link, followed.
    driver.find_element(By.ID, "export-object").clear()
    driver.find_element(By.ID, "export-object").send_keys("node")
    driver.find_element(By.ID, "export-fields").send_keys("reference_id, type")
    Select(driver.find_element(By.ID, "export-format")).select_by_visible_text("csv")
    driver.find_element(By.ID, "create-export").click()

    def download_link():
        rows = driver.find_elements(By.CSS_SELECTOR, "#exports tbody tr")
        if not rows or rows[0].get_attribute("data-status") != "DONE":
            return None
        links = rows[0].find_elements(By.CSS_SELECTOR, "td.file a")
        return links[0].get_attribute("href") if links else None

    href = wait_for("the export's download link", download_link)
    error = driver.find_element(By.ID, "export-error").text
    if error:
        fail(f"the form says: {error}")
    with urllib.request.urlopen(href) as response:
        lines = gzip.decompress(response.read()).decode().splitlines()
    if lines[0] != "reference_id,type":
        fail(f"the export's header is {lines[0]!r}")

    driver.save_screenshot(f"{out}/jobs-page.png")
    console = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    if console:
        fail(f"the browser's console has errors: {console}")
    print(json.dumps({
        "job_id": job_id, "bar": seen, "rows_read": rows_seen,
        "export_rows": len(lines) - 1, "download": href.split("?")[0],
    }))


if __name__ == "__main__":
    main()
