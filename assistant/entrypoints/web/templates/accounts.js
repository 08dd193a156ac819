// The Accounts page: choosing a provider shows its fields at once (without this script,
// the choice's own button does the same).
(function () {
  var form = document.getElementById("choose-provider");
  if (!form) return;
  form.querySelector("select").addEventListener("change", function () {
    if (this.value) form.submit();
  });
  document.getElementById("show-fields").hidden = true;
})();
