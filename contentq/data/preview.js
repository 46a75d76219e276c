// The Telegram preview: a spoiler shows its text when clicked (or Enter/Space), as in Telegram.
document.addEventListener("click", function (event) {
  var spoiler = event.target.closest && event.target.closest(".tg-spoiler:not(.tg-revealed)");
  if (spoiler) {
    spoiler.classList.add("tg-revealed");
    event.preventDefault();
  }
});
document.addEventListener("keydown", function (event) {
  if ((event.key === "Enter" || event.key === " ") && event.target.classList &&
      event.target.classList.contains("tg-spoiler")) {
    event.target.classList.add("tg-revealed");
    event.preventDefault();
  }
});
