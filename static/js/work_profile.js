// A worker's profile: the services they offer (each with its verification in words), how
// they travel and how far, and the hours of the week they usually work.
"use strict";

(function () {
  const tree = document.getElementById("skill-tree");
  const warning = document.getElementById("profile-warning");
  const hoursBody = document.getElementById("hours");
  document.querySelectorAll(".zone-name").forEach((n) => { n.textContent = zoneName(); });

  function leaves(node) {
    if (node.bookable) return [node];
    return node.children.flatMap(leaves);
  }

  function skillState(skill) {
    if (!skill) return "";
    return skill.verified ? "verified" : "waiting for an operator to verify";
  }

  function showWarning(profile) {
    const text = noOffersWarning(profile);
    warning.textContent = text;
    warning.hidden = !text;
  }

  function showSkills(categories, profile) {
    const mine = Object.fromEntries(profile.skills.map((s) => [s.category.id, s]));
    tree.innerHTML = "";
    for (const group of categories) {
      const set = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = group.name;
      set.appendChild(legend);
      for (const leaf of leaves(group)) {
        const label = document.createElement("label");
        label.className = "skill";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.value = leaf.id;
        box.checked = leaf.id in mine;
        box.id = `skill-${leaf.slug}`;
        const state = document.createElement("span");
        state.className = `skill-state muted ${mine[leaf.id] && mine[leaf.id].verified ? "verified" : ""}`;
        state.textContent = skillState(mine[leaf.id]);
        label.append(box, ` ${leaf.name} `, state);
        set.appendChild(label);
      }
      tree.appendChild(set);
    }
    showWarning(profile);
  }

  function addHoursRow(hours) {
    const row = document.getElementById("hours-row").content.firstElementChild.cloneNode(true);
    if (hours) {
      row.querySelector(".day").value = String(hours.day);
      row.querySelector(".start").value = hours.start;
      row.querySelector(".end").value = hours.end === "24:00" ? "23:59" : hours.end;
    }
    row.querySelector(".remove").addEventListener("click", () => row.remove());
    hoursBody.appendChild(row);
  }

  function showTravel(profile) {
    document.getElementById("travel_mode").value = profile.travel_mode;
    document.getElementById("service_radius_km").value = profile.service_radius_m / 1000;
    hoursBody.innerHTML = "";
    profile.weekly_hours.forEach(addHoursRow);
  }

  let categories = [];

  async function load() {
    const [cats, profile] = await Promise.all([api("GET", "/categories"),
                                               api("GET", "/worker/profile")]);
    if (!cats.ok || !profile.ok) {
      document.getElementById("skills-error").textContent = errorText((cats.ok ? profile : cats).data);
      return;
    }
    categories = cats.data.categories;
    showSkills(categories, profile.data);
    showTravel(profile.data);
  }

  document.getElementById("skills-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorBox = document.getElementById("skills-error");
    const saved = document.getElementById("skills-saved");
    errorBox.textContent = saved.textContent = "";
    const ids = [...tree.querySelectorAll("input[type=checkbox]:checked")].map((b) => Number(b.value));
    const r = await api("PUT", "/worker/skills", {category_ids: ids});
    if (!r.ok) { errorBox.textContent = errorText(r.data); return; }
    showSkills(categories, r.data);
    saved.textContent = "Saved.";
  });

  document.getElementById("add-hours").addEventListener("click", () => addHoursRow(null));

  document.getElementById("travel-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorBox = document.getElementById("travel-error");
    const saved = document.getElementById("travel-saved");
    errorBox.textContent = saved.textContent = "";
    const body = {
      travel_mode: document.getElementById("travel_mode").value,
      service_radius_m: Math.round(Number(document.getElementById("service_radius_km").value) * 1000),
      weekly_hours: [...hoursBody.children].map((row) => ({
        day: Number(row.querySelector(".day").value),
        start: row.querySelector(".start").value,
        end: row.querySelector(".end").value,
      })),
    };
    const r = await api("PATCH", "/worker/profile", body);
    if (!r.ok) { errorBox.textContent = errorText(r.data); return; }
    showTravel(r.data);
    saved.textContent = "Saved.";
  });

  load();
})();
