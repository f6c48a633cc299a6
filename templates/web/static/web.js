/*
  Progressive enhancement for the subscribe and preferences pages. Every form works
  without this file; with it:

  * the time zone is preset from the browser (Intl) on a fresh subscribe form;
  * the profile is checked as it is typed (debounced POST /api/profile/check), and the
    parser's message is shown with the offending character marked;
  * a valid profile is previewed against the last week's papers (/api/profile/preview).

  Text from the server (titles, messages, the profile itself) is only ever inserted with
  textContent / text nodes, never as HTML.
*/
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  var CHECK_DELAY_MS = 300;   // after the last keystroke: feels live, spares the server
  var PREVIEW_DELAY_MS = 700; // the preview matches a week of papers; wait for a pause

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function sentence(text) {
    text = String(text || "");
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(text) ? text : text + ".";
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin"
    }).then(function (response) {
      if (response.status === 429) throw new Error("rate-limited");
      return response.json();
    });
  }

  function detectTimezone() {
    var select = document.querySelector("select[data-autodetect]");
    if (!select || !window.Intl) return;
    var zone;
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {
      return;
    }
    if (!zone) return;
    var known = Array.prototype.some.call(select.options, function (o) {
      return o.value === zone;
    });
    if (!known) select.appendChild(el("option", "", zone.replace(/_/g, " "))).value = zone;
    select.value = zone;
  }

  function showProblem(status, field, text, error) {
    status.className = "status bad";
    status.textContent = sentence(error.message || error.problem);
    // Positions count characters (code points), as Python does; Array.from splits so.
    var chars = Array.from(text);
    var pos = Math.max(0, Math.min(error.position || 0, chars.length));
    var where = el("span", "where");
    where.appendChild(document.createTextNode(chars.slice(0, pos).join("")));
    var at = chars.slice(pos, pos + 1).join("");
    where.appendChild(el("mark", at ? "" : "end", at));
    where.appendChild(document.createTextNode(chars.slice(pos + 1).join("")));
    status.appendChild(where);
    field.setAttribute("aria-invalid", "true");
  }

  function showValid(status, field) {
    status.className = "status ok";
    status.textContent = "Valid profile";
    field.removeAttribute("aria-invalid");
  }

  function countText(total, shown) {
    if (total === 0) return "No paper of the last 7 days matches yet — the profile still works for new ones.";
    if (total === 1) return "1 paper of the last 7 days matches.";
    return total + " papers of the last 7 days match" + (total > shown ? "; the best " + shown : "") + ".";
  }

  function safeHref(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
  }

  function renderPreview(panel, data) {
    var title = panel.querySelector("h2");
    while (panel.lastChild && panel.lastChild !== title) panel.removeChild(panel.lastChild);
    panel.appendChild(el("p", "count", countText(data.total, data.matches.length)));
    var list = el("ol", "matches");
    data.matches.forEach(function (m) {
      var item = el("li");
      var href = safeHref(m.url);
      var head = href ? el("a") : el("span", "title");
      if (href) {
        head.href = href;
        head.rel = "noopener noreferrer";
      }
      m.title.forEach(function (seg) {
        head.appendChild(seg.hit ? el("mark", "", seg.text) : document.createTextNode(seg.text));
      });
      item.appendChild(head);
      if (m.matched && m.matched.length) {
        var terms = el("span", "terms");
        m.matched.forEach(function (t) {
          terms.appendChild(el("span", "term", t));
        });
        item.appendChild(terms);
      }
      list.appendChild(item);
    });
    panel.appendChild(list);
  }

  function liveProfile() {
    var field = document.getElementById("profile");
    var status = document.getElementById("profile-status");
    if (!field || !status || !field.dataset.checkUrl) return;
    var panel = document.getElementById("preview");
    var checkTimer = null;
    var previewTimer = null;
    var latest = 0; // answers to older requests are dropped

    function check() {
      var text = field.value;
      var ticket = ++latest;
      if (!text.trim()) {
        status.className = "status";
        status.textContent = "";
        field.removeAttribute("aria-invalid");
        return;
      }
      postJSON(field.dataset.checkUrl, { profile: text })
        .then(function (data) {
          if (ticket !== latest) return;
          if (data.ok) {
            showValid(status, field);
            if (panel) schedulePreview(text, ticket);
          } else if (data.error) {
            showProblem(status, field, text, data.error);
          }
        })
        .catch(function () { /* offline or rate-limited: the server checks on submit */ });
    }

    function schedulePreview(text, ticket) {
      clearTimeout(previewTimer);
      previewTimer = setTimeout(function () {
        postJSON(field.dataset.previewUrl, { profile: text })
          .then(function (data) {
            if (ticket === latest && data.ok) renderPreview(panel, data);
          })
          .catch(function () {});
      }, PREVIEW_DELAY_MS - CHECK_DELAY_MS);
    }

    field.addEventListener("input", function () {
      clearTimeout(checkTimer);
      clearTimeout(previewTimer);
      checkTimer = setTimeout(check, CHECK_DELAY_MS);
    });
    // A profile already there (preferences page, or a re-shown form) gets its preview.
    if (field.value.trim() && !field.hasAttribute("aria-invalid")) check();
  }

  ready(function () {
    detectTimezone();
    liveProfile();
  });
})();
