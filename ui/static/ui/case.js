// Keyboard shortcuts on the case page: t / f / s choose true positive / false positive / skip for
// the first match that has no choice yet; r reveals or hides the media previews. Plain script,
// served locally (no CDN, no build).
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  var target = event.target;
  if (target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA")) return;
  if (event.key === "r") {
    if (togglePreviews()) event.preventDefault();
    return;
  }
  var values = { t: "true_positive", f: "false_positive", s: "skip" };
  var value = values[event.key];
  if (!value) return;
  var matches = document.querySelectorAll("article.match.undecided");
  for (var i = 0; i < matches.length; i++) {
    if (!matches[i].querySelector("input[type=radio]:checked")) {
      var radio = matches[i].querySelector("input[type=radio][value=" + value + "]");
      if (radio) { radio.checked = true; radio.focus(); event.preventDefault(); }
      return;
    }
  }
});

// Previews: blurred and greyscale (class "concealed") until a click or r reveals them. The image
// is fetched here rather than by <img src> so a refusal's reason (an address the policy refuses,
// not an image, too big) can be shown in its place as text.
var CONCEALED = "Blurred: click it or press r to reveal.";
var REVEALED = "Revealed: click it or press r to blur it again.";

function setRevealed(img, revealed) {
  img.classList.toggle("concealed", !revealed);
  img.closest("figure").querySelector(".preview-state").textContent = revealed ? REVEALED : CONCEALED;
}

function loadedPreviews() {
  return document.querySelectorAll("figure.preview.loaded img");
}

// r: reveal every preview if any is blurred, else blur them all. False when there is none.
function togglePreviews() {
  var images = loadedPreviews();
  if (!images.length) return false;
  var reveal = document.querySelectorAll("figure.preview.loaded img.concealed").length > 0;
  for (var i = 0; i < images.length; i++) setRevealed(images[i], reveal);
  return true;
}

function loadPreview(figure) {
  var img = figure.querySelector("img");
  var state = figure.querySelector(".preview-state");
  fetch(figure.dataset.src, { credentials: "same-origin", cache: "no-store" })
    .then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (response.ok && type.indexOf("image/") === 0) {
        return response.blob().then(function (blob) {
          img.src = URL.createObjectURL(blob);
          img.hidden = false;
          figure.classList.add("loaded");
          state.textContent = CONCEALED;
        });
      }
      return response.text().then(function (text) {
        figure.classList.add("failed");
        state.textContent = "No preview (" + response.status + "): " + text.slice(0, 300);
      });
    })
    .catch(function (error) {
      figure.classList.add("failed");
      state.textContent = "No preview: " + error;
    });
  img.addEventListener("click", function () { setRevealed(img, img.classList.contains("concealed")); });
}

document.querySelectorAll("figure.preview[data-src]").forEach(loadPreview);
