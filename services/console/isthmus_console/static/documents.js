// The documents page: the upload's progress (htmx:xhr:progress) in its <progress> element.
// A file of its own: the Content-Security-Policy forbids inline scripts.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  const bar = document.getElementById("upload-progress");
  const percent = document.getElementById("upload-percent");
  if (!form || !bar || !percent) {
    return;
  }
  const show = (value, text) => {
    bar.value = value;
    bar.textContent = `${value}%`;
    percent.textContent = text;
  };
  form.addEventListener("htmx:beforeRequest", (event) => {
    if (event.target === form) {
      show(0, "Uploading…");
    }
  });
  form.addEventListener("htmx:xhr:progress", (event) => {
    const { loaded, total, lengthComputable } = event.detail;
    if (lengthComputable && total > 0) {
      const value = Math.min(100, Math.round((loaded * 100) / total));
      show(value, `${value}% sent`);
    }
  });
  form.addEventListener("htmx:afterRequest", (event) => {
    if (event.target !== form) {
      return;
    }
    if (event.detail.successful) {
      show(100, "Upload done");
      form.reset();
    } else if (event.detail.xhr && event.detail.xhr.status) {
      show(100, `Upload refused (HTTP ${event.detail.xhr.status}): see the message below`);
    } else {
      show(0, "Upload failed: the console could not be reached");
    }
  });
});
