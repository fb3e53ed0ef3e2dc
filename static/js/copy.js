// Copy buttons: <button class="copy" data-copy="input-id">.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy"));
  if (!field) return;
  field.select();
  var done = function () { button.classList.add("copied"); setTimeout(function () { button.classList.remove("copied"); }, 1500); };
  if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); }); }
  else { document.execCommand("copy"); done(); }
});
// Copy buttons that are useless without a script (the code beside them can be selected by hand) start hidden.
document.querySelectorAll("button.copy[hidden]").forEach(function (button) { button.hidden = false; });
