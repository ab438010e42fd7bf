// Developer phone: polls the simulator's control API (relative to data-base) and renders handsets.
// Every piece of user data is written with textContent, never as HTML.
(function () {
  "use strict";
  var BASE = document.body.getAttribute("data-base") || "";
  var POLL_MS = 800;
  var selected = decodeURIComponent((location.hash || "").slice(1)) || null;
  var config = { numbers: [] };
  var current = null;
  var polling = false;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function api(method, path, body) {
    var opts = { method: method, headers: { "Accept": "application/json" }, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(BASE + "/_sim" + path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
        return data;
      });
    });
  }
  function hpath(number) { return "/handsets/" + encodeURIComponent(number); }
  function timeOf(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString();
  }

  function select(number) {
    selected = number;
    history.replaceState(null, "", "#" + encodeURIComponent(number));
    current = null;
    poll();
  }

  function renderList(handsets) {
    var list = $("handset-list");
    clear(list);
    $("no-handsets").hidden = handsets.length > 0;
    handsets.forEach(function (h) {
      var li = el("li", h.number === selected ? "selected" : "");
      li.setAttribute("data-number", h.number);
      var num = el("div", "num", h.number);
      if (h.active_call) num.appendChild(el("span", "badge", h.active_call.status === "in-progress" ? "on call" : "call"));
      li.appendChild(num);
      li.appendChild(el("div", "last", h.last_message ? h.last_message.body : (h.number_type || "")));
      li.addEventListener("click", function () { select(h.number); });
      list.appendChild(li);
    });
  }

  function renderThread(h) {
    var items = h.inbox.map(function (m) { return { m: m, dir: "in" }; })
      .concat(h.sent.map(function (m) { return { m: m, dir: "out" }; }));
    items.sort(function (a, b) { return a.m.time < b.m.time ? -1 : a.m.time > b.m.time ? 1 : 0; });
    var thread = $("thread");
    var atBottom = thread.scrollTop + thread.clientHeight >= thread.scrollHeight - 8;
    clear(thread);
    items.forEach(function (item) {
      var m = item.m;
      var li = el("li", "bubble " + item.dir);
      li.setAttribute("data-sid", m.sid);
      li.appendChild(el("span", "text", m.body));
      var info = (item.dir === "in" ? "from " + (m.from || "?") : "to " + m.to) + " · " + timeOf(m.time);
      if (m.kind === "auto") info += " · carrier auto-reply";
      if (item.dir === "out" && m.webhook_error) info += " · webhook: " + m.webhook_error;
      else if (item.dir === "out" && m.webhook_status) info += " · webhook " + m.webhook_status;
      li.appendChild(el("span", "info", info));
      thread.appendChild(li);
    });
    if (atBottom) thread.scrollTop = thread.scrollHeight;
  }

  function renderReplyTo(h) {
    var sel = $("reply-to");
    if (document.activeElement === sel) return;
    var last = null;
    h.inbox.forEach(function (m) { if (config.numbers.indexOf(m.from) >= 0) last = m.from; });
    var keep = sel.value;
    clear(sel);
    config.numbers.forEach(function (n) {
      var opt = el("option", "", n);
      opt.value = n;
      sel.appendChild(opt);
    });
    sel.value = keep && config.numbers.indexOf(keep) >= 0 ? keep : (last || config.numbers[0] || "");
  }

  function describeEntry(e) {
    switch (e.kind) {
      case "say": return { text: e.text, meta: (e.voice || "") + " · " + (e.language || "") +
        (e.interrupted ? " · cut short by a key" : "") };
      case "play": return { sys: "♪ plays " + e.url };
      case "pause": return { sys: "(pause " + e.length + " s)" };
      case "gather": return { sys: e.submitted ? "→ sent digits \"" + e.digits + "\"" : "(no input, " + e.ended_by + ")" };
      case "redirect": return { sys: "→ redirect " + (e.url || "") };
      case "hangup": return { sys: "(caller hung up)" };
      case "error": return { sys: "application error " + e.code + ": " + e.message };
      default: return { sys: "(" + e.kind + (e.verb ? " " + e.verb : "") + ")" };
    }
  }

  function renderCall(h) {
    var call = h.active_call || (h.calls.length ? h.calls[h.calls.length - 1] : null);
    var box = $("call-box");
    var live = !!(h.active_call && h.active_call.status === "in-progress");
    box.className = "call-box " + (live ? "live" : (h.active_call ? "ringing" : "idle"));
    $("call-status").textContent = call
      ? (h.active_call ? "Call from " : "Last call from ") + call.from + " — " + call.status +
        (call.answered_by ? " (" + call.answered_by + ")" : "")
      : "No active call";
    var transcript = $("transcript");
    clear(transcript);
    (call ? call.transcript : []).forEach(function (e) {
      var d = describeEntry(e);
      var li = el("li", d.sys ? "sys" : "", d.sys || d.text);
      if (d.meta) li.appendChild(el("span", "say-meta", d.meta));
      transcript.appendChild(li);
    });
    transcript.scrollTop = transcript.scrollHeight;
    var hint = $("gather-hint");
    if (live && call.waiting_for_keys && call.gather) {
      hint.hidden = false;
      hint.textContent = "Listening for keys (timeout " + call.gather.timeout + " s" +
        (call.gather.num_digits ? ", " + call.gather.num_digits + " digit(s)" : "") +
        (call.gather.finish_on_key ? ", finish with " + call.gather.finish_on_key : "") + ")";
    } else {
      hint.hidden = true;
    }
    Array.prototype.forEach.call($("keypad").querySelectorAll("button"), function (b) { b.disabled = !live; });
    $("hangup").disabled = !h.active_call;
    // Like Twilio, only a listening <Gather> hears keys; the others are shown as not heard.
    $("pressed").textContent = call && call.pressed ? "pressed: " + call.pressed +
      (call.unheard ? " (not heard, no menu was listening: " + call.unheard + ")" : "") : "";
    var historyList = $("call-history");
    clear(historyList);
    h.calls.slice().reverse().slice(0, 8).forEach(function (c) {
      historyList.appendChild(el("li", "", timeOf(c.time) + " · " + c.from + " · " + c.status +
        (c.digits.length ? " · digits " + c.digits.join(",") : "")));
    });
    var mode = $("call-mode");
    if (document.activeElement !== mode) {
      var value = h.behaviour.call === "interactive" ? "auto" : h.behaviour.call;
      mode.value = value === "answer" ? "auto" : value;
    }
  }

  function renderHandset(h) {
    current = h;
    $("empty").hidden = true;
    $("phone-view").hidden = false;
    $("phone-number").textContent = h.number;
    var meta = [h.number_type, h.country].filter(Boolean).join(" · ");
    if (h.opted_out_from && h.opted_out_from.length) meta += " · opted out (STOP) from " + h.opted_out_from.join(", ");
    $("phone-meta").textContent = meta;
    renderThread(h);
    renderReplyTo(h);
    renderCall(h);
  }

  function poll() {
    if (polling) return Promise.resolve();
    polling = true;
    return api("GET", "/handsets").then(function (data) {
      $("conn").textContent = "live";
      $("conn").className = "conn ok";
      if (!selected && data.handsets.length) selected = data.handsets[0].number;
      renderList(data.handsets);
      if (!selected) return null;
      return api("GET", hpath(selected)).then(renderHandset);
    }).catch(function (err) {
      $("conn").textContent = "simulator unreachable: " + err.message;
      $("conn").className = "conn bad";
    }).then(function () { polling = false; });
  }

  function loop() {
    poll().then(function () { setTimeout(loop, POLL_MS); });
  }

  function buildKeypad() {
    var pad = $("keypad");
    "123456789*0#".split("").forEach(function (key) {
      var b = el("button", "", key);
      b.type = "button";
      b.disabled = true;
      b.setAttribute("data-key", key);
      b.setAttribute("aria-label", "key " + key);
      b.addEventListener("click", function () {
        if (!selected) return;
        api("POST", hpath(selected) + "/keys", { keys: key }).then(poll).catch(function (err) {
          $("pressed").textContent = err.message;
        });
      });
      pad.appendChild(b);
    });
  }

  function wire() {
    $("open-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var number = $("open-number").value.replace(/[\s()-]/g, "");
      if (!number) return;
      api("GET", hpath(number)).then(function () { $("open-number").value = ""; select(number); })
        .catch(function (err) { $("open-number").setCustomValidity(err.message); $("open-number").reportValidity();
          setTimeout(function () { $("open-number").setCustomValidity(""); }, 2000); });
    });
    $("reply-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = $("reply-body").value;
      if (!selected || !body.trim()) return;
      $("reply-send").disabled = true;
      api("POST", hpath(selected) + "/sms", { body: body, to: $("reply-to").value || undefined })
        .then(function () { $("reply-body").value = ""; $("reply-error").hidden = true; return poll(); })
        .catch(function (err) { $("reply-error").hidden = false; $("reply-error").textContent = err.message; })
        .then(function () { $("reply-send").disabled = false; });
    });
    $("reply-body").addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("reply-send").click(); }
    });
    $("hangup").addEventListener("click", function () {
      if (selected) api("POST", hpath(selected) + "/hangup").then(poll).catch(function () {});
    });
    $("call-mode").addEventListener("change", function () {
      if (selected) api("PATCH", hpath(selected) + "/behaviour", { call: $("call-mode").value }).then(poll);
    });
  }

  api("GET", "/config").then(function (c) { config = c; }).catch(function () {}).then(function () {
    buildKeypad();
    wire();
    loop();
  });
})();
