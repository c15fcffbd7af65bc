// cloudgate console: the little the pages need beyond HTML. Every page works without it.
"use strict";

// Forms with data-confirm ask first (revoke, delete).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Buttons with data-copy="#selector" copy that element's text (the key shown once).
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    button.textContent = "Copied";
  });
});

// Elements with data-refresh="/ui/..." are replaced by that URL's HTML every few seconds
// (the deployments' live health). A signed-out session stops the refresh.
function refresh(element) {
  const source = element.getAttribute("data-refresh");
  const timer = window.setInterval(() => {
    if (document.hidden) return;
    fetch(source, { credentials: "same-origin", redirect: "manual" })
      .then((response) => {
        if (response.status !== 200) {
          window.clearInterval(timer);
          return null;
        }
        return response.text();
      })
      .then((text) => {
        if (text !== null) element.innerHTML = text;
      })
      .catch(() => {});
  }, 5000);
}

document.querySelectorAll("[data-refresh]").forEach(refresh);
