/* Copy buttons: <button data-copy="ID"> copies the text of the element with that id and says so beside it. */
(function () {
  "use strict";

  function textOf(element) {
    return element.value !== undefined ? element.value : element.textContent;
  }

  // navigator.clipboard exists only in a secure context (https, or localhost); elsewhere the page falls back
  // to selecting the text and the browser's copy command, which every browser still honours on a click.
  function fallbackCopy(text) {
    var scratch = document.createElement("textarea");
    scratch.value = text;
    scratch.setAttribute("readonly", "");
    scratch.style.position = "fixed";
    scratch.style.opacity = "0";
    document.body.appendChild(scratch);
    scratch.select();
    var done = false;
    try {
      done = document.execCommand("copy");
    } catch (error) {
      done = false;
    }
    document.body.removeChild(scratch);
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function onClick(event) {
    var button = event.currentTarget;
    var source = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById(button.getAttribute("aria-describedby"));
    if (!source) {
      return;
    }
    copy(textOf(source).trim()).then(function () {
      if (status) { status.textContent = "Copied."; }
    }, function () {
      if (status) { status.textContent = "Select the text and copy it (the browser refused)."; }
    });
  }

  function setUp() {
    var buttons = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;  // without JavaScript the buttons stay hidden: the text can still be selected
      buttons[i].addEventListener("click", onClick);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
