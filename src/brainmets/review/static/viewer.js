// The case view: the hanging protocol (t1n, t1c, t2w, t2f; each axial and coronal) in eight
// linked NiiVue viewers with the label map overlaid, the lesion table and the decisions.
import { Niivue } from "/static/niivue.js";

const SEQUENCES = ["t1n", "t1c", "t2w", "t2f"];
// the paper's colours: 1 necrosis red, 2 edema green, 3 enhancing blue
const LABELS = {
  R: [0, 255, 0, 0], G: [0, 0, 255, 0], B: [0, 0, 0, 255], A: [0, 255, 255, 255], I: [0, 1, 2, 3],
  labels: ["", "necrosis", "edema", "enhancing"],
};

export async function openCase(pid, { api, session, el, go }) {
  document.getElementById("case-view").hidden = false;
  const detail = await api(`/api/patients/${encodeURIComponent(pid)}`);
  document.getElementById("case-id").textContent = detail.id;
  const showState = (review) => {
    const s = document.getElementById("case-state");
    s.textContent = `${review.state}${review.detail ? ` (${review.detail})` : ""}`;
    s.className = `state ${review.state.replace(" ", "-")}`;
  };
  showState(detail.review);

  const box = document.getElementById("viewers");
  const viewers = [];
  let syncing = false;
  const opacity = () => (document.getElementById("overlay").checked ? Number(document.getElementById("opacity").value) : 0);
  const cursorLabel = document.getElementById("cursor");
  const showCursor = (nv) => {
    const v = nv.frac2vox(nv.scene.crosshairPos);
    cursorLabel.textContent = `voxel ${v.map((x) => Math.round(x)).join(", ")}`;
  };
  const follow = (source) => {
    if (syncing) return;
    syncing = true;
    for (const nv of viewers) {
      if (nv === source) continue;
      nv.scene.crosshairPos = [...source.scene.crosshairPos];
      nv.drawScene();
    }
    syncing = false;
    showCursor(source);
  };
  {
    for (const seq of SEQUENCES) {
      const plane = "axial+coronal";
      const cell = el("div", undefined, "viewer");
      const canvas = document.createElement("canvas");
      canvas.id = `view-${seq}-${plane}`;
      // window/level of this sequence: the display range (NiiVue's cal_min/cal_max); a
      // right-drag in the viewer sets it too
      const wl = el("div", undefined, "wl");
      const lo = Object.assign(document.createElement("input"), { type: "number", id: `wl-min-${seq}`, title: `${seq} window minimum` });
      const hi = Object.assign(document.createElement("input"), { type: "number", id: `wl-max-${seq}`, title: `${seq} window maximum` });
      const auto = el("button", "auto");
      auto.type = "button";
      auto.title = `${seq}: the automatic window`;
      wl.append(el("span", "window"), lo, el("span", "-"), hi, auto);
      cell.append(canvas, el("span", `${seq} ${plane}`, "label"), wl);
      box.append(cell);
      const nv = new Niivue({ backColor: [0, 0, 0, 1], crosshairColor: [1, 1, 0, 1], show3Dcrosshair: false, isResizeCanvas: true, logLevel: "error" });
      await nv.attachToCanvas(canvas);
      // one viewer per sequence, two planes: axial above, coronal below (8 views in all)
      nv.setCustomLayout([
        { sliceType: nv.sliceTypeAxial, position: [0, 0, 1, 0.5] },
        { sliceType: nv.sliceTypeCoronal, position: [0, 0.5, 1, 0.5] },
      ]);
      nv.onLocationChange = () => follow(nv);
      nv.bmSequence = seq;
      nv.bmWindow = { lo, hi, auto };
      viewers.push(nv);
    }
  }
  const volumes = (seq) => {
    const list = [{ url: `/api/patients/${encodeURIComponent(pid)}/images/${seq}`, name: `${seq}.nii.gz` }];
    if (detail.images.seg) list.push({ url: `/api/patients/${encodeURIComponent(pid)}/images/seg`, name: "seg.nii.gz", opacity: opacity() });
    return list;
  };
  await Promise.all(viewers.map(async (nv) => {
    await nv.loadVolumes(volumes(nv.bmSequence));
    if (nv.volumes.length > 1) {
      nv.volumes[1].setColormapLabel(LABELS);
      nv.updateGLVolume();
    }
  }));
  for (const nv of viewers) {  // window/level controls
    const { lo, hi, auto } = nv.bmWindow;
    const vol = nv.volumes[0];
    const round = (x) => Math.round(x * 100) / 100;
    const show = () => { lo.value = round(vol.cal_min); hi.value = round(vol.cal_max); };
    const initial = [vol.cal_min, vol.cal_max];
    const apply = (a, b) => {
      if (!Number.isFinite(a) || !Number.isFinite(b) || a >= b) return;
      vol.cal_min = a;
      vol.cal_max = b;
      nv.updateGLVolume();
    };
    lo.addEventListener("change", () => apply(Number(lo.value), Number(hi.value)));
    hi.addEventListener("change", () => apply(Number(lo.value), Number(hi.value)));
    auto.addEventListener("click", () => { apply(...initial); show(); });
    nv.onIntensityChange = show;  // after a right-drag
    show();
  }
  const setOpacity = () => { for (const nv of viewers) if (nv.volumes.length > 1) nv.setOpacity(1, opacity()); };
  document.getElementById("overlay").addEventListener("change", setOpacity);
  document.getElementById("opacity").addEventListener("input", setOpacity);

  const jump = (vox) => {
    const first = viewers[0];
    first.scene.crosshairPos = first.vox2frac(vox);
    first.drawScene();
    follow(first);
  };
  const body = document.querySelector("#lesions tbody");
  body.replaceChildren(...(detail.lesion_table || []).map((l) => {
    const tr = el("tr");
    tr.dataset.lesion = l.lesion;
    tr.append(el("td", l.lesion), el("td", l.volume_cm3), el("td", l.max_diameter_mm),
      el("td", l.region || l.location), el("td", l.infratentorial ? "yes" : "no"));
    tr.addEventListener("click", () => {
      for (const other of body.querySelectorAll("tr.selected")) other.classList.remove("selected");
      tr.classList.add("selected");
      jump([l.centroid_i, l.centroid_j, l.centroid_k].map(Math.round));
    });
    return tr;
  }));

  const history = () => {
    document.getElementById("history").replaceChildren(...detail.history.map((h) => el("li",
      `${h.at} ${h.user} (${h.role}): ${h.decision}${h.reason ? ` - ${h.reason}` : ""}`
      + `${h.lesion ? ` [lesion ${h.lesion}]` : ""}${h.voxel ? ` [voxel ${h.voxel.join(", ")}]` : ""}`
      + `${h.label_map_current ? "" : " [label map changed since]"}`)));
  };
  history();
  const msg = document.getElementById("decide-message");
  const canDecide = ["reviewer", "admin"].includes(session.role);
  for (const b of document.querySelectorAll("#decide button")) {
    b.disabled = !canDecide;
    b.addEventListener("click", async () => {
      const body = { decision: b.dataset.decision, reason: document.getElementById("reason").value || null };
      const pin = document.getElementById("pin").value;
      if (pin === "voxel") body.voxel = viewers[0].frac2vox(viewers[0].scene.crosshairPos).map((x) => Math.round(x));
      if (pin === "lesion") {
        const row = document.querySelector("#lesions tbody tr.selected");
        if (!row) { msg.textContent = "select a lesion in the table first"; return; }
        body.lesion = row.dataset.lesion;
      }
      try {
        const r = await api(`/api/patients/${encodeURIComponent(pid)}/review`, { method: "POST", body: JSON.stringify(body) });
        showState(r.review);
        msg.textContent = `recorded: ${body.decision}`;
        Object.assign(detail, await api(`/api/patients/${encodeURIComponent(pid)}`));
        history();
      } catch (e) { msg.textContent = e.message; }
    });
  }
  const next = async () => {
    const rows = await api("/api/patients");
    const i = rows.findIndex((r) => r.id === pid);
    const after = rows.slice(i + 1).concat(rows.slice(0, i)).find((r) => r.review.state === "pending");
    go(after ? `/case/${encodeURIComponent(after.id)}` : "/");
  };
  document.getElementById("next-case").addEventListener("click", next);
  document.addEventListener("keydown", (e) => { if (e.key === "n" && e.target.tagName !== "TEXTAREA") next(); });
  window.bmReview = { viewers, jump, cursorVoxel: () => viewers.map((nv) => nv.frac2vox(nv.scene.crosshairPos).map(Math.round)) };
  showCursor(viewers[0]);
  document.body.dataset.loaded = "true";
}
