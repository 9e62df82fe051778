// Login page: posts the form as JSON to /api/login, then opens the worklist.
const form = document.getElementById("login");
const message = document.getElementById("message");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form));
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(data),
    credentials: "same-origin",
  });
  if (r.ok) {
    window.location.assign("/");
  } else {
    message.textContent = (await r.json()).error || `login failed (${r.status})`;
  }
});
