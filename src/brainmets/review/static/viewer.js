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
  // voxels are array indices of the stored images (as the lesion table, the annotation
  // tools and the decisions use them); NiiVue's own voxels are of its reoriented grid, so
  // positions go through world millimetres (the images' affine)
  const grid = detail.grid;
  const apply = (m, v) => [0, 1, 2].map((r) => m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2] + m[r][3]);
  const toFrac = (nv, vox) => (grid ? nv.mm2frac(apply(grid.affine, vox)) : nv.vox2frac(vox));
  const toVoxel = (nv) => {
    if (!grid) return Array.from(nv.frac2vox(nv.scene.crosshairPos), Math.round);
    const mm = nv.frac2mm(nv.scene.crosshairPos);
    return apply(grid.inverse, [mm[0], mm[1], mm[2]]).map(Math.round);
  };
  const cursorLabel = document.getElementById("cursor");
  const showCursor = (nv) => {
    cursorLabel.textContent = `voxel ${toVoxel(nv).join(", ")}`;
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
    first.scene.crosshairPos = toFrac(first, vox);
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
      if (pin === "voxel") body.voxel = toVoxel(viewers[0]);
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
  // ------------------------------------------------------------ annotation
  // the draft's labels: the paper's colours, and 4 (a lesion not accepted yet) in magenta
  const DRAFT = {
    R: [0, 255, 0, 0, 255], G: [0, 0, 255, 0, 0], B: [0, 0, 0, 255, 255], A: [0, 255, 255, 255, 255],
    I: [0, 1, 2, 3, 4], labels: ["", "necrosis", "edema", "enhancing", "proposal"],
  };
  const annUrl = `/api/patients/${encodeURIComponent(pid)}/annotation`;
  const annMsg = document.getElementById("ann-message");
  const showDraft = document.getElementById("show-draft");
  const setOverlay = async (draft) => {
    const url = draft ? `${annUrl}/draft.nii.gz?v=${Date.now()}` : `/api/patients/${encodeURIComponent(pid)}/images/seg`;
    if (!draft && !detail.images.seg) return;
    await Promise.all(viewers.map(async (nv) => {
      while (nv.volumes.length > 1) nv.removeVolumeByIndex(1);
      await nv.addVolumeFromUrl({ url, name: draft ? "draft.nii.gz" : "seg.nii.gz", opacity: opacity() });
      nv.volumes[1].setColormapLabel(draft ? DRAFT : LABELS);
      nv.updateGLVolume();
    }));
    document.body.dataset.overlay = draft ? "draft" : "seg";
  };
  const showAnnotation = (d) => {
    document.getElementById("ann-lesions").replaceChildren(...d.lesions.map((l) => {
      const li = el("li", `lesion ${l.lesion}: core ${l.core}, necrosis ${l.necrosis}, whole ${l.whole} voxels `);
      const tick = document.createElement("input");
      tick.type = "checkbox";
      tick.className = "ann-tick";
      tick.value = String(l.lesion);
      tick.title = "tick two or more lesions to merge them";
      li.prepend(tick);
      for (const action of ["split", "remove"]) {
        const b = el("button", action);
        b.type = "button";
        b.className = `ann-${action}`;
        b.addEventListener("click", () => act({ action, lesion: l.lesion }));
        li.append(b);
      }
      return li;
    }));
    document.getElementById("ann-candidates").replaceChildren(...d.candidates.map((c) => {
      const li = el("li", `candidate ${c.id} at ${c.centre_voxel.join(", ")}: ${c.volume_voxels} voxels, confidence ${c.confidence} `);
      const show = el("button", "show");
      show.type = "button";
      show.addEventListener("click", async () => { await act({ action: "pick", candidate: c.id }); jump(c.peak_voxel); });
      li.append(show);
      return li;
    }));
    const p = d.pending;
    annMsg.textContent = p
      ? `not accepted yet: core ${p.core}, necrosis ${p.necrosis}, whole ${p.whole} voxels (step ${p.steps})`
      : `${d.lesions.length} lesion(s) in the draft${d.changed ? " (not saved)" : ""}`;
    document.body.dataset.annotation = p ? "pending" : "idle";
  };
  const act = async (body) => {
    try {
      const d = await api(annUrl, { method: "POST", body: JSON.stringify(body) });
      document.body.dataset.overlay = "loading";  // until the new draft is drawn
      showAnnotation(d);
      if (d.saved) annMsg.textContent = `saved as version ${d.saved}; run the pipeline to fuse it`;
      showDraft.checked = true;
      await setOverlay(true);
    } catch (e) { annMsg.textContent = e.message; }
  };
  showDraft.addEventListener("change", () => setOverlay(showDraft.checked));
  document.getElementById("ann-merge").addEventListener("click", () => act({
    action: "merge", lesions: [...document.querySelectorAll(".ann-tick:checked")].map((t) => Number(t.value)),
  }));
  for (const [id, action] of [["ann-smaller", "smaller"], ["ann-larger", "larger"], ["ann-accept", "accept"],
    ["ann-reject", "reject"], ["ann-undo", "undo"], ["ann-redo", "redo"], ["ann-propose", "propose"], ["ann-save", "save"]]) {
    document.getElementById(id).addEventListener("click", () => {
      if (action === "propose") annMsg.textContent = "looking for lesions...";
      act({ action });
    });
  }
  // a click in any viewer: the brush paints, erases or fills there when it is on; else,
  // with click-to-segment on, the lesion there is grown
  const value = (id) => document.getElementById(id).value;
  for (const nv of viewers) {
    nv.canvas.addEventListener("pointerup", (e) => {
      if (e.button !== 0) return;
      const brush = value("brush");
      if (brush) {
        const body = {
          action: brush, voxel: toVoxel(nv), region: value("brush-region"),
          lesion: Number(value("brush-lesion")), brush: value("brush-shape"),
        };
        if (brush !== "fill") body.radius = Number(value("brush-radius"));
        setTimeout(() => act(body), 0);
      } else if (document.getElementById("click-mode").checked) {
        setTimeout(() => act({ action: "grow", voxel: toVoxel(nv) }), 0);
      }
    });
  }
  api(annUrl).then(showAnnotation).catch((e) => { annMsg.textContent = e.message; });

  const next = async () => {
    const rows = await api("/api/patients");
    const i = rows.findIndex((r) => r.id === pid);
    const after = rows.slice(i + 1).concat(rows.slice(0, i)).find((r) => r.review.state === "pending");
    go(after ? `/case/${encodeURIComponent(after.id)}` : "/");
  };
  document.getElementById("next-case").addEventListener("click", next);
  document.addEventListener("keydown", (e) => { if (e.key === "n" && e.target.tagName !== "TEXTAREA") next(); });
  window.bmReview = { viewers, jump, act, cursorVoxel: () => viewers.map(toVoxel) };
  showCursor(viewers[0]);
  document.body.dataset.loaded = "true";
}
