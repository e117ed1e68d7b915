// The 3D viewer: three.js with its GLTFLoader and OrbitControls (drag to orbit, wheel to zoom,
// right-drag to pan), plus keys on the focused canvas (arrows turn, + and − zoom, 0 resets).
// The job page imports this module on demand, so three.js loads only where a model is shown.
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

export const BACKGROUND = 0xe8ecf1;
// Captures in the NeRF / instant-ngp convention (Blender scenes, this project's sample) have the
// world's +Z up; the model comes back in that frame.
const WORLD_UP = new THREE.Vector3(0, 0, 1);
// Where the camera starts, seen from the model's centre: in front, to the side, above.
const VIEW_DIRECTION = new THREE.Vector3(0.6, -0.9, 0.9).normalize();
const TURN_STEP_RAD = Math.PI / 18;
const ZOOM_STEP = 1.15;
const FIELD_OF_VIEW_DEG = 40;

export class ModelViewer {
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    const canvas = this.renderer.domElement;
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "3D view of the model: drag to orbit, scroll to zoom; arrow keys turn it, + and − zoom, 0 resets");
    container.append(canvas);

    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(BACKGROUND);
    const sky = new THREE.HemisphereLight(0xffffff, 0x606070, 2.2);
    sky.position.copy(WORLD_UP);
    this.scene.add(sky);
    const sun = new THREE.DirectionalLight(0xffffff, 1.6);
    sun.position.set(1, -1.5, 2);
    this.scene.add(sun);
    this.camera = new THREE.PerspectiveCamera(FIELD_OF_VIEW_DEG, 1, 0.001, 1000);
    this.camera.up.copy(WORLD_UP); // before OrbitControls, which orbits about camera.up
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.addEventListener("change", () => this.render());
    canvas.addEventListener("keydown", (event) => this.onKey(event));
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.resize();
  }

  /** Load a GLB (a Blob) and frame it; resolves to {triangles, textured}. */
  async show(blob) {
    const url = URL.createObjectURL(blob);
    try {
      const gltf = await new GLTFLoader().loadAsync(url);
      this.model = gltf.scene;
    } finally {
      URL.revokeObjectURL(url);
    }
    this.scene.add(this.model);
    let triangles = 0;
    let textured = false;
    this.model.traverse((node) => {
      if (!node.isMesh) return;
      // The mesh stage removes faces no camera saw: show the far side through such holes.
      node.material.side = THREE.DoubleSide;
      const index = node.geometry.index;
      triangles += (index ? index.count : node.geometry.attributes.position.count) / 3;
      textured ||= Boolean(node.material?.map);
    });
    this.frame();
    return { triangles, textured };
  }

  /** Put the whole model in view, seen from above its front. */
  frame() {
    const box = new THREE.Box3().setFromObject(this.model);
    const centre = box.getCenter(new THREE.Vector3());
    const radius = box.getBoundingSphere(new THREE.Sphere()).radius || 1;
    const distance = radius / Math.sin(THREE.MathUtils.degToRad(FIELD_OF_VIEW_DEG / 2));
    this.camera.near = distance / 100;
    this.camera.far = distance * 100;
    this.camera.position.copy(centre).addScaledVector(VIEW_DIRECTION, distance);
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(centre);
    this.controls.update();
    this.controls.saveState();
    this.render();
  }

  onKey(event) {
    const offset = this.camera.position.clone().sub(this.controls.target);
    const spherical = new THREE.Spherical().setFromVector3(offset);
    const handled = {
      ArrowLeft: () => (spherical.theta -= TURN_STEP_RAD),
      ArrowRight: () => (spherical.theta += TURN_STEP_RAD),
      ArrowUp: () => (spherical.phi = Math.max(0.05, spherical.phi - TURN_STEP_RAD)),
      ArrowDown: () => (spherical.phi = Math.min(Math.PI - 0.05, spherical.phi + TURN_STEP_RAD)),
      "+": () => (spherical.radius /= ZOOM_STEP),
      "=": () => (spherical.radius /= ZOOM_STEP),
      "-": () => (spherical.radius *= ZOOM_STEP),
      0: () => this.controls.reset(),
    }[event.key];
    if (!handled) return;
    event.preventDefault();
    if (event.key === "0") {
      handled();
    } else {
      handled();
      this.camera.position.copy(this.controls.target).add(new THREE.Vector3().setFromSpherical(spherical));
      this.controls.update();
    }
    this.render();
  }

  resize() {
    const width = this.container.clientWidth || 480;
    const height = Math.round(width * 0.75);
    this.renderer.setSize(width, height);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  dispose() {
    this.resizeObserver.disconnect();
    this.controls.dispose();
    this.renderer.dispose();
  }
}
