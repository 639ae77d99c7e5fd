// The plan builder (/admin/plans/…/builder/): add and remove charges and tiers, show each charge's fields for
// its model. Rows are Django formsets: a new row is the page's <template> with its numbers put in, and the
// formset's TOTAL_FORMS counts it; a removed row is ticked DELETE and hidden (the server skips it).
(function () {
  "use strict";
  const form = document.getElementById("plan-builder");
  if (!form) return;
  const charges = document.getElementById("pb-charges");
  const chargeCount = form.querySelector('input[name="charges-TOTAL_FORMS"]');

  function showModel(fieldset) {
    const select = fieldset.querySelector('select[name$="-model"]');
    const model = select ? select.value : "";
    fieldset.querySelectorAll(".pb-model").forEach((part) => {
      part.hidden = !part.dataset.models.split(" ").includes(model);
    });
  }

  function addTier(fieldset) {
    const prefix = fieldset.dataset.prefix; // "charges-3"
    const count = fieldset.querySelector(`input[name="${prefix}-tiers-TOTAL_FORMS"]`);
    const index = parseInt(count.value, 10);
    const html = document.getElementById("pb-tier-template").innerHTML
      .replaceAll("__charge__", prefix.slice("charges-".length))
      .replaceAll("__prefix__", String(index));
    const body = fieldset.querySelector(".pb-tiers tbody");
    body.insertAdjacentHTML("beforeend", html);
    count.value = String(index + 1);
    body.lastElementChild.querySelector("input").focus();
  }

  function addCharge() {
    const index = parseInt(chargeCount.value, 10);
    const html = document.getElementById("pb-charge-template").innerHTML.replaceAll("__prefix__", String(index));
    charges.insertAdjacentHTML("beforeend", html);
    chargeCount.value = String(index + 1);
    const fieldset = charges.lastElementChild;
    showModel(fieldset);
    fieldset.querySelector("select").focus();
  }

  function remove(row) {
    row.querySelector('input[name$="-DELETE"]').checked = true;
    row.hidden = true;
  }

  form.addEventListener("click", (event) => {
    const target = event.target;
    if (target.matches(".pb-add-tier")) addTier(target.closest(".pb-charge"));
    else if (target.matches(".pb-remove-tier")) remove(target.closest("tr"));
    else if (target.matches(".pb-remove-charge")) remove(target.closest(".pb-charge"));
    else if (target.matches("#pb-add-charge")) addCharge();
  });
  form.addEventListener("change", (event) => {
    if (event.target.matches('select[name$="-model"]')) showModel(event.target.closest(".pb-charge"));
  });
  charges.querySelectorAll(".pb-charge").forEach(showModel);
  form.classList.add("pb-scripted");
})();
