// The Ask page's script (the Content-Security-Policy forbids inline scripts). The answer itself streams
// in through htmx's sse extension; this only scrolls the cited span of a source into view, moves the
// focus to the source panel when a citation opens it, and lets Ctrl+Enter ask.
(() => {
  const showCited = (root) => {
    const mark = root.querySelector("mark#cited");
    if (mark) {
      mark.scrollIntoView({ block: "center" });
    }
  };
  document.addEventListener("DOMContentLoaded", () => {
    showCited(document);
    const question = document.getElementById("ask-question");
    if (question) {
      question.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && question.form) {
          e.preventDefault();
          question.form.requestSubmit();
        }
      });
    }
    document.body.addEventListener("htmx:afterSwap", (e) => {
      const panel = document.getElementById("source-panel");
      if (panel && e.detail.target === panel) {
        panel.focus({ preventScroll: true });
        showCited(panel);
      }
    });
  });
})();
