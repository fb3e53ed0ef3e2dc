// The phone's share sheet for the customer link, where the browser has one (the button stays hidden otherwise).
(function () {
  "use strict";
  if (typeof navigator.share !== "function") return;
  document.querySelectorAll("[data-share-url]").forEach(function (button) {
    button.closest("[data-share-sheet]").hidden = false;
    button.addEventListener("click", function () {
      navigator
        .share({ title: button.dataset.shareTitle, text: button.dataset.shareTitle, url: button.dataset.shareUrl })
        .catch(function () {}); // the customer closed the sheet
    });
  });
})();
