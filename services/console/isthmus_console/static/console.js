// The console's own script (no inline scripts: the Content-Security-Policy forbids them).
// Network failures of htmx requests are said in the status region instead of failing silently.
document.addEventListener("DOMContentLoaded", () => {
  const toast = document.getElementById("toast");
  const say = (text) => { if (toast) { toast.textContent = text; } };
  document.body.addEventListener("htmx:sendError", () => say("The console cannot be reached: check the connection and try again."));
  document.body.addEventListener("htmx:beforeRequest", () => say(""));
});
