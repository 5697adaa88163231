"""Drives the `embermq demo` dashboard in a real, headless Chromium
(Debian's chromium + chromium-driver) through Selenium.

Usage: dashboard.py URL SCREENSHOT DEVICE_ID...

Opens the page, waits until it is connected to the broker and shows at
least three readings from every device, checks the live chart and the
rate, clicks "ping" and "LED on" for the first device and waits for the
replies, saves a screenshot, and prints what it saw as one JSON line.
Exits non-zero (with the reason on stderr) on any failure; every wait is
bounded.
"""

import json
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECS = 30


def main():
    url, screenshot, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
    profile = tempfile.mkdtemp(prefix="embermq-chromium-")
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1200,1100",
        "--user-data-dir=" + profile,
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(WAIT_SECS)
        driver.set_script_timeout(WAIT_SECS)
        driver.get(url)
        wait = WebDriverWait(driver, WAIT_SECS)
        step = "the page connecting to the broker"
        wait.until(lambda d: d.find_element(By.ID, "status").text == "connected")

        def readings(d, device):
            text = d.find_element(
                By.CSS_SELECTOR, 'tr[data-device="%s"] td.readings' % device
            ).text
            return int(text) if text.isdigit() else 0

        step = "readings from every device"
        wait.until(lambda d: all(readings(d, i) >= 3 for i in ids))
        step = "the live chart"
        wait.until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart polyline")) == len(ids)
        )
        rate = float(driver.find_element(By.ID, "rate").text)
        target = ids[0]
        replies = {}
        for button, cmd in (("cmd-ping", "ping"), ("cmd-led-on", "led")):
            step = "the reply to " + cmd
            driver.find_element(
                By.CSS_SELECTOR, 'tr[data-device="%s"] button.%s' % (target, button)
            ).click()
            cell = driver.find_element(By.ID, "reply-" + target)
            # "sent {...} ..." until the reply replaces it.
            wait.until(
                lambda d: cell.text.startswith("{") and ('"cmd":"%s"' % cmd) in cell.text
            )
            replies[cmd] = cell.text
        driver.save_screenshot(screenshot)
        seen = {i: readings(driver, i) for i in ids}
        print(
            json.dumps(
                {
                    "status": driver.find_element(By.ID, "status").text,
                    "readings": seen,
                    "rate": rate,
                    "replies": replies,
                    "devices_reporting": driver.find_element(By.ID, "seen").text,
                }
            )
        )
    except TimeoutException:
        driver.save_screenshot(screenshot)
        print("timed out after %d s waiting for %s" % (WAIT_SECS, step), file=sys.stderr)
        sys.exit(1)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
