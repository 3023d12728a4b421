// Keyboard shortcuts on the case page: t / f / s choose true positive / false positive / skip for
// the first match that has no choice yet. Plain script, served locally (no CDN, no build).
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  var target = event.target;
  if (target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA")) return;
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
