// qrflow dashboard behaviour: no inline scripts or handlers (the CSP allows none); everything hangs off
// data- attributes here.
"use strict";

document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const text = copy.getAttribute("data-copy");
    navigator.clipboard.writeText(text).then(() => {
      const status = document.getElementById(copy.getAttribute("aria-controls"));
      if (status) status.textContent = "Copied";
    });
  }
});

// A form with data-confirm asks before it is sent (deleting a code).
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
