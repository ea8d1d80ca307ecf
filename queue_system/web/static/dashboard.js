// queue_system dashboard: refresh each [data-live] element from its fragment URL, and wire the
// "select all" checkbox. No framework, no build step; served from the package (CSP: self only).
"use strict";

function refresh(element) {
  const every = parseInt(element.dataset.every || "2000", 10);
  const tick = async () => {
    try {
      const response = await fetch(element.dataset.live, {credentials: "same-origin", cache: "no-store"});
      if (response.ok) {
        element.innerHTML = await response.text();
        element.dataset.refreshed = String(Date.now());
      }
    } catch (error) {
      // The server restarted or the network blinked: try again at the next tick.
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(refresh);
  document.querySelectorAll("[data-select-all]").forEach((box) => {
    box.addEventListener("change", () => {
      box.closest("form").querySelectorAll('input[name="operation_id"]').forEach((other) => {
        other.checked = box.checked;
      });
    });
  });
});
