/* The order builder: add and remove rows without a round trip, and show the totals as the user types.
   Display only: the server parses every amount again and works the totals out itself. */
(function () {
  "use strict";

  var form = document.getElementById("order-form");
  if (!form) { return; }

  // Whole TWD as the server accepts them (１２００, 1,200, NT$1,200); anything else counts as nothing.
  function amount(input) {
    if (!input) { return 0; }
    var text = (input.value.normalize ? input.value.normalize("NFKC") : input.value).trim();
    text = text.replace(/^(NT)?\$\s*/i, "");
    if (/^[1-9][0-9]{0,2}(,[0-9]{3})+$/.test(text)) { text = text.replace(/,/g, ""); }
    return /^[0-9]{1,12}$/.test(text) ? parseInt(text, 10) : 0;
  }

  // The e-invoice fields of the chosen kind only (all of them show without the script).
  function showInvoiceFields() {
    var checked = form.querySelector('[name="invoice_kind"]:checked');
    var kind = checked ? checked.value : "";
    form.querySelectorAll("[data-invoice-for]").forEach(function (el) {
      el.hidden = el.getAttribute("data-invoice-for").split(" ").indexOf(kind) < 0;
    });
  }

  function twd(value) {
    var sign = value < 0 ? "-" : "";
    return sign + "NT$" + Math.abs(value).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function rows(kind) {
    return form.querySelectorAll('[data-rows="' + kind + '"] [data-row]');
  }

  function field(row, suffix) {
    return row.querySelector('[name$="-' + suffix + '"]');
  }

  function show(name, value) {
    var el = form.querySelector('[data-total="' + name + '"]');
    if (el) {
      el.textContent = twd(value);
      el.classList.toggle("negative", value < 0);
    }
  }

  function recalc() {
    var subtotal = 0;
    rows("items").forEach(function (row) {
      var line = amount(field(row, "unit_price")) * amount(field(row, "quantity"));
      subtotal += line;
      var out = row.querySelector("[data-line-total]");
      if (out) { out.textContent = twd(line); }
    });
    var vouchers = 0;
    rows("vouchers").forEach(function (row) { vouchers += amount(field(row, "amount")); });
    var shipping = amount(form.querySelector('[name="shipping_fee"]'));
    show("subtotal", subtotal);
    show("shipping", shipping);
    show("vouchers", -vouchers);
    show("payable", subtotal + shipping - vouchers);
  }

  // The next free row number: one past the highest in the posted names (the server accepts gaps).
  function nextIndex(kind) {
    var highest = -1;
    var pattern = new RegExp("^" + kind + "-(\\d+)-");
    form.querySelectorAll('[name^="' + kind + '-"]').forEach(function (input) {
      var match = pattern.exec(input.name);
      if (match) { highest = Math.max(highest, parseInt(match[1], 10)); }
    });
    return highest + 1;
  }

  function addRow(kind) {
    var template = document.getElementById(kind + "-row-template");
    var list = form.querySelector('[data-rows="' + kind + '"]');
    if (!template || !list) { return; }
    var index = String(nextIndex(kind));
    var fragment = template.content.cloneNode(true);
    fragment.querySelectorAll("[name], [id], [for], [value]").forEach(function (el) {
      ["name", "id", "for"].forEach(function (attr) {
        var value = el.getAttribute(attr);
        if (value) { el.setAttribute(attr, value.split("__N__").join(index)); }
      });
      if (el.matches("[data-remove-row]")) { el.value = index; }
    });
    var row = fragment.querySelector("[data-row]");
    list.appendChild(fragment);
    var first = row && row.querySelector("input, select");
    if (first) { first.focus(); }
    recalc();
  }

  function removeRow(button) {
    var row = button.closest("[data-row]");
    if (!row) { return; }
    var kind = row.getAttribute("data-row");
    if (kind === "items" && rows("items").length === 1) {
      // Keep one item row to type into; empty it instead.
      row.querySelectorAll("input").forEach(function (input) { input.value = input.defaultValue = ""; });
      var quantity = field(row, "quantity");
      if (quantity) { quantity.value = "1"; }
    } else {
      row.remove();
    }
    recalc();
  }

  form.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-row]");
    if (add) {
      event.preventDefault();
      addRow(add.getAttribute("data-add-row"));
      return;
    }
    var remove = event.target.closest("[data-remove-row]");
    if (remove) {
      event.preventDefault();
      removeRow(remove);
    }
  });
  form.addEventListener("input", recalc);
  form.addEventListener("change", recalc);
  form.addEventListener("change", showInvoiceFields);
  recalc();
  showInvoiceFields();
}());
